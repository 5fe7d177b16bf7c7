"""Paging through an account's positions.

``/portfolio/{accountId}/positions/{pageId}`` answers up to ``positions_page_size`` (100)
positions per page, from page 0; a short or empty page ends the listing. `all_positions`
fetches every page and returns them raw so the raw zone keeps exactly what was sent.

A listing is only complete when its end is confirmed: an empty page is asked for a second
time, and after the first short (or empty) page the next page is asked for (the *probe*). An
empty probe confirms the end; a probe with rows, or an empty page that has rows when asked
again, means the gateway cut the listing short (the red team saw ``[]`` for page 1 of 250
positions, and for page 0): the whole listing is fetched again, up to `LISTING_ATTEMPTS`
times, then `TruncatedListingError`. An empty account (page 0 empty twice, and the probe) is a
real, complete listing: the conversion stores it as a flat snapshot.

What no client can see: a gateway that keeps answering ``[]`` for the last page of a listing
of an exact multiple of 100 positions plus a few (the gateway reports no count to check).

What this module must never do: stop on a full page (there may be more), return a listing whose
end was not confirmed, or loop forever on a gateway that keeps answering full pages (bounded by
`MAX_PAGES`).
"""

from __future__ import annotations

from ib_pipeline.ibkr import endpoints as ep
from ib_pipeline.ibkr.errors import GatewayError, InvalidPayloadError
from ib_pipeline.ibkr.response import Call, RawResponse

MAX_PAGES = 1000
"""Safety bound: 100,000 positions."""

LISTING_ATTEMPTS = 3
"""How many times a listing found truncated is fetched again from page 0 before giving up."""


class TruncatedListingError(GatewayError):
    """The gateway kept answering a short page followed by more positions: never stored."""


async def positions_page(call: Call, account: str, page: int) -> RawResponse:
    """One page of positions."""
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise ValueError(f"positions: page must be a non-negative integer, got {page!r}")
    return await call(ep.POSITIONS, path_params={"accountId": account, "pageId": str(page)})


async def _page(call: Call, account: str, page: int) -> RawResponse:
    response = await positions_page(call, account, page)
    if not isinstance(response.payload, list):
        raise InvalidPayloadError(
            f"positions: page {page} of {account} is not a list: {response.payload!r:.200}",
            endpoint=ep.POSITIONS.name,
        )
    return response


async def _listing(call: Call, account: str, page_size: int) -> tuple[list[RawResponse], str]:
    """One pass over the pages: (the pages through the first short one, "" if its end was
    confirmed, else why the listing is truncated).

    The end is confirmed in up to two more requests: an empty short page is asked again (an
    empty page 0 with positions on the re-ask simply starts the listing afresh: a replay reads
    every page 0 as the start of a listing, so the live load and a replay agree), then the
    page after it is probed."""
    pages: list[RawResponse] = []
    page = 0
    while page < MAX_PAGES:
        response = await _page(call, account, page)
        if len(response.payload) < page_size and not response.payload:
            again = await _page(call, account, page)
            if again.payload and page > 0:
                return pages, (
                    f"page {page} answered no positions, then {len(again.payload)} when asked again"
                )
            response = again
        pages.append(response)
        if len(response.payload) < page_size:
            probe = await _page(call, account, page + 1)
            if probe.payload:
                return pages, (
                    f"page {page} answered {len(response.payload)} of up to {page_size} "
                    f"positions, but page {page + 1} answered {len(probe.payload)} more"
                )
            return pages, ""
        page += 1
    raise GatewayError(
        f"positions: {account} still answered full pages after {MAX_PAGES} pages",
        endpoint=ep.POSITIONS.name,
    )


async def all_positions(call: Call, account: str, *, page_size: int) -> list[RawResponse]:
    """Every page of ``account``'s positions, through the first page shorter than
    ``page_size`` (the probe of the page after it is not returned). An empty account gives one
    empty page. A truncated listing is fetched again; `TruncatedListingError` if it stays so."""
    problems: list[str] = []
    for _ in range(LISTING_ATTEMPTS):
        pages, problem = await _listing(call, account, page_size)
        if not problem:
            return pages
        problems.append(problem)
    raise TruncatedListingError(
        f"positions: the listing of {account} was truncated {LISTING_ATTEMPTS} times in a row "
        f"({'; '.join(problems)}); nothing is stored as its snapshot",
        endpoint=ep.POSITIONS.name,
    )
