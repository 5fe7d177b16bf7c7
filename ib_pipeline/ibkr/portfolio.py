"""Paging through an account's positions.

``/portfolio/{accountId}/positions/{pageId}`` answers up to ``positions_page_size`` (100)
positions per page, from page 0; a short or empty page ends the listing. `all_positions`
fetches every page and returns them raw so the raw zone keeps exactly what was sent.

What this module must never do: stop on a full page (there may be more), or loop forever on a
gateway that keeps answering full pages (bounded by `MAX_PAGES`).
"""

from __future__ import annotations

from ib_pipeline.ibkr import endpoints as ep
from ib_pipeline.ibkr.errors import GatewayError, InvalidPayloadError
from ib_pipeline.ibkr.response import Call, RawResponse

MAX_PAGES = 1000
"""Safety bound: 100,000 positions."""


async def positions_page(call: Call, account: str, page: int) -> RawResponse:
    """One page of positions."""
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise ValueError(f"positions: page must be a non-negative integer, got {page!r}")
    return await call(ep.POSITIONS, path_params={"accountId": account, "pageId": str(page)})


async def all_positions(call: Call, account: str, *, page_size: int) -> list[RawResponse]:
    """Every page of ``account``'s positions, until a page shorter than ``page_size``."""
    pages: list[RawResponse] = []
    for page in range(MAX_PAGES):
        response = await positions_page(call, account, page)
        if not isinstance(response.payload, list):
            raise InvalidPayloadError(
                f"positions: page {page} of {account} is not a list: {response.payload!r:.200}",
                endpoint=ep.POSITIONS.name,
            )
        pages.append(response)
        if len(response.payload) < page_size:
            return pages
    raise GatewayError(
        f"positions: {account} still answered full pages after {MAX_PAGES} pages",
        endpoint=ep.POSITIONS.name,
    )
