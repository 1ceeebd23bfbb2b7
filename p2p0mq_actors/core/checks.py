"""Checks of settings shared by the node's parts: each raises a
``ConfigurationError`` naming the setting and the value it was given."""

from __future__ import annotations

import math

from .errors import ConfigurationError


def finite(number: float) -> bool:
    """``math.isfinite``, False for an int too large for a float (which
    ``isfinite`` raises on)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def check_seconds(name: str, value: object, *, zero_ok: bool = False) -> None:
    """Raise ConfigurationError unless ``value`` is a finite number of
    seconds, > 0 (or >= 0 with ``zero_ok``)."""
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and finite(value)
        and (value >= 0 if zero_ok else value > 0)
    )
    if not ok:
        bound = ">= 0" if zero_ok else "> 0"
        raise ConfigurationError(
            f"{name} must be a finite number of seconds {bound}, not {value!r}"
        )


def check_count(name: str, value: object) -> None:
    """Raise ConfigurationError unless ``value`` is an int >= 1 (not a bool)."""
    if type(value) is not int or value < 1:
        raise ConfigurationError(f"{name} must be an int >= 1, not {value!r}")
