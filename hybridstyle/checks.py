"""Checks of user-given values, shared by the model's config checks and the image-level stylize path.

They turn the wrong type (a string, ``None``, ``True``) into a ``ValueError`` that says what was expected, instead of a
``TypeError`` from deep inside torch or a comparison; messages quote values through :func:`brief`, so a hostile input
cannot make an error message megabytes long.
"""

from __future__ import annotations


def is_whole(value: object) -> bool:
    """Whether ``value`` is an int; ``True`` and ``False`` are not (bool is a subclass of int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def number(value: object, name: str, expected: str) -> float:
    """``value`` as a float; a string, None or other non-number is a ValueError saying what ``name`` should be.

    Parameters:
        value: what the user passed.
        name: the option's name, for the message.
        expected: what it should be, for the message (e.g. ``"in [0, 1]"``).
    """
    if value is None or isinstance(value, (str, bytes, bool)):
        raise ValueError(f"{name} must be a number {expected}, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number {expected}, got {brief(value)}") from None


def brief(value: object) -> str:
    """``repr(value)``, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
