"""Phone numbers to E.164, with the programme's region for numbers written the local way."""

from __future__ import annotations

import phonenumbers


class InvalidPhone(ValueError):
    pass


def normalize_phone(text: str, region: str) -> str:
    """'8 (916) 123-45-67' in RU → '+79161234567'. Raises InvalidPhone when it cannot be a number."""
    try:
        parsed = phonenumbers.parse(text, region.upper())
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone("not a phone number") from exc
    # "Possible" (right length for the country) rather than "valid": numbering plans change faster
    # than the metadata, and refusing a real customer's number at the till is the worse mistake.
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhone("not a possible phone number for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(e164: str) -> str:
    """'+79161234567' → '+7916*****67', for screens and logs that must not show the number."""
    if len(e164) <= 6:
        return "*" * len(e164)
    return e164[:5] + "*" * (len(e164) - 7) + e164[-2:]
