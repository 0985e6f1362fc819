"""Luhn (mod 10) check digits for loyalty and bank card numbers."""

from __future__ import annotations


def _sum(digits: str, *, double_first: bool) -> int:
    total = 0
    double = double_first
    for ch in reversed(digits):
        d = ord(ch) - 48
        if double:
            d *= 2
            if d > 9:
                d -= 9
        total += d
        double = not double
    return total


def check_digit(payload: str) -> str:
    """The digit to append to `payload` so that the whole number passes Luhn."""
    if not payload.isdigit():
        raise ValueError("payload must be digits")
    return str((10 - _sum(payload, double_first=True) % 10) % 10)


def is_valid(number: str) -> bool:
    return len(number) >= 2 and number.isdigit() and number.isascii() and _sum(number, double_first=False) % 10 == 0


def with_check_digit(payload: str) -> str:
    return payload + check_digit(payload)
