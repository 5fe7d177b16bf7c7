"""Lazy public names for a package: ``from ib_pipeline import connect`` without importing
every layer at ``import ib_pipeline``.

Why one helper: the top-level package, ``ibkr`` and ``simulator`` each export a few names from
their modules, loaded on first use (importing pandas, httpx or the simulator's market only when
a caller needs them). Each ``__init__`` declares ``name -> module`` once and takes its
``__getattr__``/``__dir__`` from `lazy_exports`; a loaded name is kept in the package's
namespace, so the lookup happens once.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` for ``exports``
    (public name -> the module that defines it)."""

    def load(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def names() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return load, names
