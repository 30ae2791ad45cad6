"""Checks of user-supplied values: one clear error naming the argument, the value, what is
allowed and the fix.

Used by ``gym.make`` kwargs, stream options, agent settings, CLI options and sweep keys alike, so
every bad input reads the same way::

    batch_size: got 0 (int), expected an integer >= 1; fix: batch_size=10
"""

from __future__ import annotations

import math
import reprlib
from typing import Any

from cl_env.error import CLEnvError


class InvalidValueError(CLEnvError, ValueError):
    """A user-supplied value of the wrong type or outside its range."""


_REPR = reprlib.Repr()  # (keyword arguments need Python 3.12)
_REPR.maxlevel, _REPR.maxstring, _REPR.maxlong, _REPR.maxother = 2, 50, 40, 50
_REPR.maxtuple = _REPR.maxlist = _REPR.maxarray = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 4


def shown(value: Any, limit: int = 60) -> str:
    """A bounded rendering of a user value: never the whole of a huge or deeply nested value
    (:mod:`reprlib` limits what is rendered before the text is cut to ``limit`` characters)."""
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is still named by its type
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(value: Any) -> str:
    return f"{shown(value)} ({type(value).__name__})"


def fail(name: str, value: Any, expected: str, fix: str | None = None) -> InvalidValueError:
    """The error for ``name=value`` (raise it)."""
    return InvalidValueError(f"{name}: got {_shown(value)}, expected {expected}"
                             + (f"; fix: {fix}" if fix else ""))


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite(value: Any) -> bool:
    """Whether a number is finite; an int too large for a float is finite (no OverflowError)."""
    if is_int(value):
        return True
    return is_number(value) and math.isfinite(value)


def integer(name: str, value: Any, minimum: int | None = None, maximum: int | None = None,
            fix: str | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (no bools, no floats, no strings)."""
    bounds = _bounds(minimum, maximum)
    if not is_int(value):
        raise fail(name, value, f"an integer{bounds}", fix)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise fail(name, value, f"an integer{bounds}", fix)
    return int(value)


def number(name: str, value: Any, minimum: float | None = None, maximum: float | None = None,
           strict_minimum: bool = False, fix: str | None = None) -> float:
    """``value`` as a finite float in range (``strict_minimum``: ``> minimum``)."""
    low = "" if minimum is None else (f" > {minimum:g}" if strict_minimum else f" >= {minimum:g}")
    high = "" if maximum is None else f" <= {maximum:g}"
    expected = f"a finite number{low}{' and' if low and high else ''}{high}"
    if not is_number(value) or not is_finite(value):
        raise fail(name, value, expected, fix)
    # compared exactly (int against float), so an int too large for a float is refused, not an OverflowError
    if minimum is not None and (value <= minimum if strict_minimum else value < minimum):
        raise fail(name, value, expected, fix)
    if maximum is not None and value > maximum:
        raise fail(name, value, expected, fix)
    try:
        return float(value)
    except OverflowError:
        raise fail(name, value, f"{expected} (representable as a float)", fix) from None


def boolean(name: str, value: Any, fix: str | None = None) -> bool:
    if not isinstance(value, bool):
        raise fail(name, value, "True or False", fix)
    return value


def choice(name: str, value: Any, choices: list | tuple, fix: str | None = None) -> Any:
    if value not in choices:
        raise fail(name, value, f"one of {list(choices)}", fix)
    return value


def device(name: str, value: Any) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``."""
    ok = isinstance(value, str) and (value in ("cpu", "cuda") or
                                     (value.startswith("cuda:") and value[5:].isdigit()))
    if not ok:
        raise fail(name, value, "'cpu', 'cuda' or 'cuda:N'", "--device cpu")
    return value


def _bounds(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
