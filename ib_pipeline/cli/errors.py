"""How the command line reports a failure: one line that says what and what to do.

Why: a user who typed a wrong ticker, or forgot to start the gateway, needs the one sentence
that names the problem, not three hundred lines of library traceback. Every error the
project raises for a user to act on already carries such a sentence (`IbkrError` and its
subclasses, `UniverseError`, the store's and the warehouse's ValueErrors); this module only
keeps that sentence on one line, and names the type of anything unexpected, pointing at
``--verbose`` for the traceback. It imports nothing heavy.
"""

from __future__ import annotations

import click

MAX_CHARS = 600
"""Longer messages (a list of a hundred bad files) are cut, with a pointer to --verbose."""


class UserFacing(click.ClickException):
    """A failure shown as ``error: <message>`` and exit status 1."""

    def format_message(self) -> str:
        return self.message


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line; unexpected error types are named."""
    text = " ".join(str(error).split()) or type(error).__name__
    if not _expected(error):
        text = f"unexpected {type(error).__name__}: {text} (run with --verbose for the traceback)"
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS - 40].rstrip() + " ... (--verbose shows all)"
    return text


def _expected(error: BaseException) -> bool:
    """Errors whose message was written for the user: ours (each names the value and the fix)
    and the OS's (a path that does not exist, a permission)."""
    module = type(error).__module__
    return (
        module.startswith(("ib_pipeline", "assets"))
        or isinstance(error, OSError)
        or type(error).__name__ in ("ValueError", "CatalogException", "ParserException")
    )


class BadRequest(UserFacing):
    """A request that cannot be carried out as given (a bad universe file, a date range with no
    partitions, an unsafe setting): one line, exit status 2 like a usage error, without the
    usage text (the arguments were well formed; their meaning was not)."""

    exit_code = 2
