"""The real-world cases of issue 13 as the simulator shows them, and why each is believed.

Every case is opt-in (`SimulatorConfig` fields, ``ib-pipeline sim`` options) or additive (new
conids, new endpoints), so the default simulator serves exactly what it served before.

`GUESSES` lists each behaviour of the real gateway the simulator reproduces for these cases, with
its source: ``spec`` (spec/ibkr-web-api.openapi.yaml), ``README`` (spec/README.md), ``example``
(spec/examples/), ``docs`` (IBKR's documentation or a generated client of its published API, such
as ibind or the Rust ``ib`` crate), ``exchange`` (the exchange's own rules or exchange_calendars),
or ``guess`` (nothing authoritative was at hand: change it here, in the code it names, and in the
tests, when a capture of the real gateway shows otherwise).

What it must never do: hold behaviour. It is documentation the tests check is complete.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Guess:
    """One believed behaviour: the case, what the simulator does, and the evidence."""

    case: str  # advisor, splits, futures, non-us, delayed
    behaviour: str
    source: str  # spec, README, example, docs, exchange, guess
    where: str  # the simulator code that implements it


GUESSES: tuple[Guess, ...] = (
    # -- advisor / multi-account logins --------------------------------------------------------
    Guess(
        "advisor",
        "/iserver/accounts lists the group 'All' first, then the real sub-accounts, then user "
        "groups (GROUP1) and allocation profiles (UPRO_BUY_785_...) in 'accounts'; 'groups' and "
        "'profiles' list the non-accounts",
        "README + issue 13 (All is the first entry); order after All is a guess",
        "broker.Broker.iserver_accounts_payload",
    ),
    Guess(
        "advisor",
        "'groups' contains 'All' and the user groups; 'profiles' the allocation profile ids",
        "guess (README names the fields, not their contents)",
        "broker.ADVISOR_GROUPS, broker.ADVISOR_PROFILES",
    ),
    Guess(
        "advisor",
        "'acctProps' describes the real accounts only; 'aliases' maps every entry (groups and "
        "profiles to themselves)",
        "guess",
        "broker.Broker.iserver_accounts_payload",
    ),
    Guess(
        "advisor",
        "'selectedAccount' is the first real sub-account (the main account), not 'All'",
        "guess (the gateway's selected account is the account in use: README)",
        "broker.Broker.iserver_accounts_payload",
    ),
    Guess(
        "advisor",
        "/portfolio/accounts lists only the real accounts, with faclient true",
        "README (only real accounts have positions and summaries); faclient: guess",
        "broker.Broker.portfolio_accounts_payload",
    ),
    Guess(
        "advisor",
        "positions/summary of a group or profile answer 400 {'error': 'Bad Request: <id> is an "
        "account group or allocation profile, not an account', 'statusCode': 400}; orders to "
        "them are refused like an unknown account",
        "guess (status and text chosen; the README only says they have no positions)",
        "answers.not_an_account, routes_portfolio",
    ),
    # -- splits ----------------------------------------------------------------------------------
    Guess(
        "splits",
        "history is adjusted as of the time of the request: bars of sessions before a split's "
        "effective date have prices divided by the ratio and volumes multiplied by it once the "
        "clock has reached the effective date, and are unadjusted before",
        "README (Split adjustment)",
        "market.Market.split_factors, market._split_basis",
    ),
    Guess(
        "splits",
        "the adjustment switches at 00:00 exchange-local time of the effective date (the ex-date)",
        "guess (IBKR's exact restatement time is not documented)",
        "market.Market.basis_date",
    ),
    Guess(
        "splits",
        "adjusted prices are not rounded to the tick (rounded to 10 decimals only); as-traded "
        "prices are on the tick; adjusted volumes are whole shares (rounded)",
        "guess",
        "market._split_basis",
    ),
    Guess(
        "splits",
        "snapshots show the current session as traded (the split's new basis) and a prior close "
        "adjusted like the history",
        "guess (snapshots agree with the latest bar)",
        "market.Market.quote",
    ),
    # -- futures -----------------------------------------------------------------------------------
    Guess(
        "futures",
        "GET /trsrv/futures?symbols=ES answers {'ES': [{symbol, conid, underlyingConid, "
        "expirationDate, ltd, shortFuturesCutOff, longFuturesCutOff}]} with yyyymmdd integers, "
        "non-expired months only, nearest first",
        "README (shape, expired months drop out); docs (ib crate FuturesInner: 'a list of "
        "non-expired future contracts'); integer dates and the cut-off fields: guess",
        "futures.futures_listing",
    ),
    Guess(
        "futures",
        "the listing shows months listed on the clock's date: from the day after the same "
        "month's expiry a year earlier to the last trade date (about 4 quarterly months)",
        "guess (CME lists more months further out; only about a year has liquidity)",
        "instruments._future_month, futures.listed_months",
    ),
    Guess(
        "futures",
        "a symbol without futures maps to an empty list; no 'symbols' is a 400",
        "guess",
        "futures.futures_listing",
    ),
    Guess(
        "futures",
        "expirationDate is the third Friday of March/June/September/December; ltd the day "
        "before (as in IBKR's example 20250321 / 20250320)",
        "exchange (CME quarterly cycle, third Friday) + issue 13's example for ltd",
        "instruments.third_friday, instruments._future_month",
    ),
    Guess(
        "futures",
        "underlyingConid is the root's conid, which contract search returns (the simulator's "
        "existing continuous ES/NQ conid; the real gateway returns the index's conid there)",
        "README (search returns the underlying) + guess (continuous root as underlying)",
        "instruments._future_month",
    ),
    Guess(
        "futures",
        "GET /iserver/secdef/info?conid=<root>&sectype=FUT&month=MAR25 answers a list of "
        "{conid, ticker, secType, listingExchange, exchange, companyName, currency, "
        "validExchanges, maturityDate (yyyymmdd string), multiplier (string), desc1, desc2, "
        "right, strike, tradingClass}; month is required for FUT; errors are 400s",
        "docs (ib crate SecdefInfo fields; ib_client: conid, sectype, month, exchange); "
        "error answers, localSymbol/ltd/underlyingConid extras: guess",
        "futures.secdef_info",
    ),
    Guess(
        "futures",
        "conids of contract months are invented (950,000,000 + block*100,000 + yyy*100 + mm)",
        "guess (real ES/NQ month conids not at hand)",
        "instruments.future_month_conid",
    ),
    Guess(
        "futures",
        "a month has bars only while listed (first date to last trade date); each month is the "
        "root's market times a carry factor exp(4.5% * days to expiry / 365), so months differ "
        "and the roll shows a gap; volume moves to the next month 8 days before the last trade "
        "date; history of a window after the last trade date answers 'No data.'",
        "guess (a synthetic market)",
        "market._future_month_tape, history.history_response_with_report",
    ),
    # -- non-US exchanges --------------------------------------------------------------------------
    Guess(
        "non-us",
        "exchange codes: IBIS Xetra, LSE London, TSEJ Tokyo, SEHK Hong Kong, ASX Australia, "
        "TSE Toronto; calendars XETR, XLON, XTKS, XHKG, XASX, XTSE",
        "README (Exchange codes) + exchange_calendars",
        "ib_pipeline.calendars.IBKR_EXCHANGE_CALENDARS",
    ),
    Guess(
        "non-us",
        "conids of SAP, SIE (IBIS), VOD (LSE), 7203 (TSEJ), 700 (SEHK), BHP (ASX), RY (TSE) "
        "are invented (900,000,057..63)",
        "guess (no authoritative source for the real conids was at hand)",
        "instruments.NON_US_STOCKS",
    ),
    Guess(
        "non-us",
        "volumes and sizes of non-US stocks are in shares (lot 1, volumeFactor 1)",
        "guess (README: lots of 100 are a US-stock convention)",
        "instruments._non_us",
    ),
    Guess(
        "non-us",
        "LSE prices are in pence (GBp) while the currency reads GBP",
        "guess",
        "instruments.NON_US_STOCKS",
    ),
    Guess(
        "non-us",
        "sessions are the calendar's regular hours only (outsideRth changes nothing); Tokyo and "
        "Hong Kong have no bars in their lunch break",
        "exchange (exchange_calendars breaks) + guess (no extended hours modelled)",
        "ib_pipeline.calendars.NON_US_EQUITY, market._without_break",
    ),
    Guess(
        "non-us",
        "contract search shows companyHeader 'NAME - IBIS', description 'IBIS' and a STK "
        "section with exchange 'IBIS;SMART'; secdef/info shows exchange and currency",
        "example (secdef_search_1.json, a US stock) + guess for non-US",
        "search._result, futures._info",
    ),
    Guess(
        "non-us",
        "non-US stocks are not in the default accounts' holdings (UNIVERSE unchanged)",
        "simulator choice (keeps the default ground truth)",
        "instruments.NON_US_STOCKS",
    ),
    # -- delayed data ------------------------------------------------------------------------------
    Guess(
        "delayed",
        "snapshot field 6509 is 'DpB' for delayed instruments ('RpB' real-time)",
        "README (first letter R/D/Z/Y/N, second P/p); the 'pB' tail: guess",
        "market.DELAYED_AVAILABILITY",
    ),
    Guess(
        "delayed",
        "history mdAvailability is 'D' for delayed instruments ('S' real-time, as the examples)",
        "example ('S'); 'D' for delayed: guess",
        "history.DELAYED_HISTORY_AVAILABILITY",
    ),
    Guess(
        "delayed",
        "delayed data is 15 minutes behind the clock: bars complete 15 minutes later, the "
        "snapshot shows the market of 15 minutes ago (its _updated is the real now)",
        "README (~15 minutes behind); _updated: guess",
        "market.DELAY, market.Market.now_ms",
    ),
    Guess(
        "delayed",
        "frozen data (Z, Y) is not simulated",
        "not done",
        "-",
    ),
)
"""Every guess and its source, in one place (see the module docstring)."""


def table() -> str:
    """`GUESSES` as a Markdown table (for a report or the docs)."""
    lines = ["| case | simulator behaviour | source | where |", "|---|---|---|---|"]
    lines += [f"| {g.case} | {g.behaviour} | {g.source} | {g.where} |" for g in GUESSES]
    return "\n".join(lines)
