"""An agent's settings: defaults and rules merged over its class hierarchy, values checked once.

Each function takes the agent class (``Agent`` subclasses declare ``SETTINGS``, ``SETTING_RULES``
and ``UNUSED_SETTINGS``; see :class:`agents.base.Agent`); the class's methods of the same names
call them.
"""

from __future__ import annotations

from typing import Any

from cl_env import checks
from cl_env.error import UnknownNameError


def all_settings(cls: type) -> dict[str, Any]:
    """Every setting of ``cls`` and its default (``SETTINGS`` over the MRO, less ``UNUSED_SETTINGS``)."""
    merged: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        merged.update(getattr(klass, "SETTINGS", {}))
    for key in cls.UNUSED_SETTINGS:
        merged.pop(key, None)
    return merged


def setting_rules(cls: type) -> dict[str, Any]:
    """What each setting of ``cls`` accepts (``SETTING_RULES`` over the MRO)."""
    merged: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        merged.update(getattr(klass, "SETTING_RULES", {}))
    return merged


def check_setting(cls: type, key: str, value: Any) -> Any:
    """``value`` if ``--set key=value`` is acceptable, else one clear :class:`InvalidValueError`."""
    default = all_settings(cls)[key]
    rule = setting_rules(cls).get(key)
    name = f"setting {key} of agent {cls.name!r}"
    fix = f"--set {key}={default!r}" if default is not None else None
    if callable(rule):
        return rule(name, value)
    if isinstance(rule, tuple):
        return checks.choice(name, value, rule, fix)
    if value is None:
        if default is None:
            return None  # "the protocol's default", resolved by the agent
        raise checks.fail(name, value, f"a value like {default!r}", fix)
    if rule == "string" or (rule is None and isinstance(default, str)):
        if not isinstance(value, str):
            raise checks.fail(name, value, "a string", fix)
        return value
    if rule == "count":
        return checks.integer(name, value, 1, fix=fix)
    if rule == "positive":
        return checks.number(name, value, 0.0, strict_minimum=True, fix=fix)
    if rule == "non-negative":
        return checks.number(name, value, 0.0, fix=fix)
    if isinstance(default, bool):
        return checks.boolean(name, value, fix)
    if checks.is_int(default):
        return checks.integer(name, value, 0, fix=fix)
    if isinstance(default, float) or (default is None and checks.is_number(value)):
        return checks.number(name, value, 0.0, fix=fix)
    if isinstance(default, dict) and not isinstance(value, dict):
        raise checks.fail(name, value, "a mapping like {'key': value}", fix)
    return value


def resolve_settings(cls: type, given: dict) -> dict:
    """Defaults overridden by ``given``; an unknown key raises with the valid ones, a bad
    value (wrong type, out of range, not finite) with what is allowed (:func:`check_setting`)."""
    valid = all_settings(cls)
    for key in given:
        if key not in valid:
            raise UnknownNameError(f"setting of agent {cls.name!r}", key, valid)
    return {**valid, **{k: check_setting(cls, k, v) for k, v in given.items()}}
