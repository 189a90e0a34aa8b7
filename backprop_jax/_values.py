"""The checks of plain values that the library repeats: a count (an integer, never a bool)."""


def is_count(value, least=1):
    """True if ``value`` is an ``int`` (not a ``bool``, which Python counts as one) of at least ``least``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def check_count(name, value, least=1, *, optional=False):
    """Raises ValueError, naming ``name``, unless ``value`` is an integer of at least ``least``
    (or None, if ``optional``)."""
    if optional and value is None:
        return
    if not is_count(value, least):
        wanted = "a positive integer" if least == 1 else f"an integer >= {least}"
        raise ValueError(f"{name} must be {'None or ' if optional else ''}{wanted}, got {value!r}")
