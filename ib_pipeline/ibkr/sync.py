"""A small blocking facade over `IbkrClient`, for notebooks and scripts.

The async client needs an event loop; a notebook already runs one (so ``asyncio.run`` fails
there) and a script has none. `SyncIbkrClient` runs a private event loop in a daemon thread and
forwards each call to it, so it works in both. Pacing is per event loop, so every call made
through one `SyncIbkrClient` shares one pacer; two facades in one process do not share theirs
(use one facade, or the async client, when several tasks run at once).

What this module must never do: hold any logic of its own beyond forwarding (everything lives in
the async client), or leave its thread running after `close`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from ib_pipeline.calendars import US_EQUITY, TradingHours
from ib_pipeline.clock import Clock
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.history import HistoryRange, HistoryRequest
from ib_pipeline.ibkr.orders import PlacedOrder
from ib_pipeline.ibkr.response import RawResponse, ResponseHook
from ib_pipeline.ibkr.settings import ClientSettings
from ib_pipeline.ibkr.snapshots import DEFAULT_FIELDS

T = TypeVar("T")


class SyncIbkrClient:
    """Blocking twin of `IbkrClient`: ``with SyncIbkrClient(settings) as ib: ib.accounts()``."""

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        on_response: ResponseHook | None = None,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.client = IbkrClient(
            settings, transport=transport, on_response=on_response, clock=clock, environ=environ
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"SyncIbkrClient({self.client!r})"

    def __enter__(self) -> SyncIbkrClient:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self, *, check_auth: bool = True) -> None:
        """Start the private loop and open the async client in it."""
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="ibkr-sync-loop", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._run(self.client.open(check_auth=check_auth))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the async client, stop the loop and join its thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.client.close(), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            self._loop = self._thread = None

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the client is not open: use `with SyncIbkrClient(...)`")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    # -- forwarding ---------------------------------------------------------------------------

    def auth_status(self) -> Any:
        return self._run(self.client.auth_status())

    def tickle(self) -> Any:
        return self._run(self.client.tickle())

    def logout(self) -> Any:
        return self._run(self.client.logout())

    def accounts(self) -> Any:
        return self._run(self.client.accounts())

    def portfolio_accounts(self) -> Any:
        return self._run(self.client.portfolio_accounts())

    def account_id(self) -> str:
        return self._run(self.client.account_id())

    def search_contracts(
        self, symbol: str, *, name: bool = False, sec_type: str | None = None
    ) -> Any:
        return self._run(self.client.search_contracts(symbol, name=name, sec_type=sec_type))

    def futures(self, symbols: Sequence[str]) -> Any:
        return self._run(self.client.futures(symbols))

    def secdef_info(
        self,
        conid: int,
        sec_type: str,
        *,
        month: str | None = None,
        exchange: str | None = None,
    ) -> Any:
        return self._run(self.client.secdef_info(conid, sec_type, month=month, exchange=exchange))

    def snapshot(self, conids: Sequence[int], fields: Sequence[str]) -> Any:
        return self._run(self.client.snapshot(conids, fields))

    def snapshots(
        self, conids: Sequence[int], fields: Sequence[str] = DEFAULT_FIELDS
    ) -> list[RawResponse]:
        return self._run(self.client.snapshots(conids, fields))

    def history(
        self,
        conid: int,
        period: str,
        bar: str,
        *,
        start_time: datetime | None = None,
        outside_rth: bool | None = None,
        exchange: str | None = None,
        source: str | None = None,
    ) -> Any:
        return self._run(
            self.client.history(
                conid,
                period,
                bar,
                start_time=start_time,
                outside_rth=outside_rth,
                exchange=exchange,
                source=source,
            )
        )

    def history_range(
        self,
        conid: int,
        bar_size: str,
        start: datetime,
        end: datetime,
        *,
        outside_rth: bool = False,
        source: str | None = "Trades",
        exchange: str | None = None,
        hours: TradingHours = US_EQUITY,
    ) -> HistoryRange:
        return self._run(
            self.client.history_range(
                conid,
                bar_size,
                start,
                end,
                outside_rth=outside_rth,
                source=source,
                exchange=exchange,
                hours=hours,
            )
        )

    def history_ranges(self, requests: Iterable[HistoryRequest]) -> list[HistoryRange]:
        return self._run(self.client.history_ranges(list(requests)))

    def positions(self, page: int = 0, account: str | None = None) -> Any:
        return self._run(self.client.positions(page, account))

    def all_positions(self, account: str | None = None) -> list[RawResponse]:
        return self._run(self.client.all_positions(account))

    def account_summary(self, account: str | None = None) -> Any:
        return self._run(self.client.account_summary(account))

    def live_orders(self) -> Any:
        return self._run(self.client.live_orders())

    def live_orders_settled(self) -> RawResponse:
        return self._run(self.client.live_orders_settled())

    def place_order(
        self,
        order: Mapping[str, Any],
        *,
        account: str | None = None,
        accept_message_ids: Iterable[str] = (),
    ) -> PlacedOrder:
        return self._run(
            self.client.place_order(
                order, account=account, accept_message_ids=tuple(accept_message_ids)
            )
        )

    def reply(self, reply_id: str, *, confirmed: bool) -> Any:
        return self._run(self.client.reply(reply_id, confirmed=confirmed))
