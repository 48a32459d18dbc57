"""Reading configuration from environment variables: the one parser for the workers, the API
and the Lambda functions.

A missing or malformed variable raises :class:`~mlpoc.errors.SettingsError` with one sentence
that names the variable, what it should hold and where its value comes from.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlpoc.errors import SettingsError


def required(env: Mapping[str, str], described: Mapping[str, str], *, fix: str) -> dict[str, str]:
    """The values of every variable in ``described`` (name -> what it is), or one error that
    names all the missing ones and says how to set them (``fix``)."""
    missing = [name for name in described if not env.get(name)]
    if missing:
        listed = "; ".join(f"{name} ({described[name]})" for name in missing)
        raise SettingsError(f"missing environment variable(s): {listed}. {fix}")
    return {name: env[name] for name in described}


def integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(
            f"{name} must be a whole number from {low} to {high}; got {raw!r}"
        ) from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be a whole number from {low} to {high}; got {value}")
    return value


def number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(
            f"{name} must be a number from {low:g} to {high:g}; got {raw!r}"
        ) from None
    if not low <= value <= high:  # NaN fails both comparisons
        raise SettingsError(f"{name} must be a number from {low:g} to {high:g}; got {raw!r}")
    return value


def switch(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in {"on", "off"}:
        raise SettingsError(f"{name} must be on or off; got {raw!r}")
    return raw == "on"


def listed(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped."""
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())
