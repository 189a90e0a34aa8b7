"""The checks of plain values that the library repeats: a count (an integer, never a bool)."""

from typing import Any


def is_count(value: Any, least: int = 1) -> bool:
    """True if ``value`` is an ``int`` (not a ``bool``, which Python counts as one) of at least ``least``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def check_count(name: str, value: Any, least: int = 1, *, optional: bool = False) -> None:
    """Raises ValueError, naming ``name``, unless ``value`` is an integer of at least ``least``
    (or None, if ``optional``)."""
    if optional and value is None:
        return
    if not is_count(value, least):
        wanted = "a positive integer" if least == 1 else f"an integer >= {least}"
        raise ValueError(f"{name} must be {'None or ' if optional else ''}{wanted}, got {value!r}")
