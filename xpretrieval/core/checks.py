"""Range checks of config values, written once: every component's `__post_init__` states its
bounds with `check_range`, which also refuses non-finite numbers (nan, inf) for any bound."""

from __future__ import annotations

import dataclasses
import math
from typing import Any


def check_range(
    name: str,
    value: float | None,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
    optional: bool = False,
) -> None:
    """Raise `ValueError("lr must be > 0, got -1.0")` unless `value` is a finite number within
    the bounds given (`optional`: None is allowed too, meaning off)."""
    if value is None and optional:
        return
    _bound(above, at_least, "lower"), _bound(below, at_most, "upper")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    inside = number and math.isfinite(value)
    if inside and above is not None:
        inside = value > above
    if inside and at_least is not None:
        inside = value >= at_least
    if inside and below is not None:
        inside = value < below
    if inside and at_most is not None:
        inside = value <= at_most
    if not inside:
        bounds = _describe(above, at_least, below, at_most, optional)
        raise ValueError(f"{name} must be {bounds}, got {value}")


def _bound(open_bound: float | None, closed_bound: float | None, side: str) -> None:
    if open_bound is not None and closed_bound is not None:
        raise TypeError(f"give one {side} bound, not both")


def _describe(
    above: float | None,
    at_least: float | None,
    below: float | None,
    at_most: float | None,
    optional: bool,
) -> str:
    """`> 0`, `>= 1 or null`, `in (0, 1]`, or `a finite number` without bounds."""
    low = above if above is not None else at_least
    high = below if below is not None else at_most
    if low is not None and high is not None:
        opening, closing = "(" if above is not None else "[", ")" if below is not None else "]"
        text = f"in {opening}{low:g}, {high:g}{closing}"
    elif low is not None:
        text = f"{'>' if above is not None else '>='} {low:g}"
    elif high is not None:
        text = f"{'<' if below is not None else '<='} {high:g}"
    else:
        text = "a finite number"
    return f"{text} or null" if optional else text


def non_finite_settings(config: Any, prefix: str = "") -> list[tuple[str, float]]:
    """(dotted key, value) of every float setting in a tree of config dataclasses (and their dicts
    and lists) that is nan or infinite: no setting may be, whatever its own checks say."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        items = [(field.name, getattr(config, field.name)) for field in dataclasses.fields(config)]
    elif isinstance(config, dict):
        items = list(config.items())
    elif isinstance(config, (list, tuple)):
        items = list(enumerate(config))
    elif isinstance(config, float) and not math.isfinite(config):
        return [(prefix.rstrip("."), config)]
    else:
        return []
    return [bad for name, value in items for bad in non_finite_settings(value, f"{prefix}{name}.")]
