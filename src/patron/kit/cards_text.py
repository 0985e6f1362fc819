"""Card numbers as people type them."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s\-.]")


def clean_card_number(text: str) -> str:
    """'7800 1234-5678 9012' → '7800123456789012'; anything but digits left over is an error."""
    digits = _SEPARATORS.sub("", text)
    if not digits.isdigit() or not digits.isascii():
        raise ValueError("a card number has only digits")
    return digits


def mask_pan(number: str) -> str:
    return "*" * max(len(number) - 4, 0) + number[-4:]
