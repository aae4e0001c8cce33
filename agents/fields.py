"""Dataclass fields that document themselves: help text, choices and range in ``metadata``, read by ``--help``, by the
checks below and by the docs' config reference. Used by the training recipe's sections and by ``SamplingConfig``."""

from __future__ import annotations

import math
from dataclasses import field, fields, is_dataclass
from typing import Any


def documented(
    default: Any,
    help: str,
    *,
    choices: tuple | None = None,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    alias: str | None = None,
    factory: Any = None,
) -> Any:
    """A dataclass field with its help text, allowed choices, inclusive range (``above``: an exclusive lower bound)
    and old flat name in ``metadata``: what ``--help``, the config check and the docs' config reference read."""
    meta = {"help": help, "choices": choices, "low": low, "high": high, "above": above, "alias": alias}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def check_fields(obj: Any, prefix: str = "", what: str = "config key") -> None:
    """Choices and ranges declared in the fields' metadata (:func:`documented`); ValueError names the key (``what``
    ``prefix``.name), the value and what was expected."""
    for f in fields(obj):
        value, meta, key = getattr(obj, f.name), f.metadata, f"{prefix}{f.name}"
        if is_dataclass(value):
            check_fields(value, f"{f.name}.", what)
            continue
        if meta.get("choices") and value not in meta["choices"]:
            raise ValueError(f"{what} {key!r}: {value!r} is not one of {', '.join(map(str, meta['choices']))}")
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        low, high, above = meta.get("low"), meta.get("high"), meta.get("above")
        if math.isinf(value):
            raise ValueError(f"{what} {key!r}: {value} is not a finite number")
        if (
            math.isnan(value)
            or (low is not None and value < low)
            or (high is not None and value > high)
            or (above is not None and value <= above)
        ):
            lower = f"[{low}" if low is not None else f"({above}" if above is not None else None
            if lower and high is not None:
                expected = f"in {lower}, {high}]"
            elif lower:
                expected = f">= {low}" if low is not None else f"> {above}"
            else:
                expected = f"<= {high}"
            raise ValueError(f"{what} {key!r}: {value} is out of range; expected a value {expected}")
