"""Optional dependencies of the adapters' games (OpenSpiel, TextArena, PettingZoo)."""

from __future__ import annotations

import importlib


def optional_package(module: str, games: str, package: str, extra: str):
    """The optional dependency an adapter's games need; ValueError naming the pip extra when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"{games} games need the optional package {package}: pip install -e .[{extra}]") from None
