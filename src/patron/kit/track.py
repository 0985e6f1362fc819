"""Magnetic-stripe track data as a keyboard-wedge reader types it.

A reader is a keyboard: it types track 1 (`%B<PAN>^<NAME>^<YYMM>...?`) and/or track 2
(`;<PAN>=<YYMM>...?`) into whatever field has focus. Two real-world snags are handled:

* the till's keyboard layout is Russian, so the reader's keystrokes arrive as the Cyrillic
  characters on the same keys (`;` → `ж`, `^` → `:`, `?` → `,`, `B` → `И`);
* a Chinese input method in full-width mode types `；`, `？`, `＝` instead of ASCII.

Only the card number is taken; the cardholder name on track 1 is personal data and is dropped.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Same physical key on a Russian (ЙЦУКЕН) and a US (QWERTY) layout.
_RU = 'ёйцукенгшщзхъфывапролджэячсмитьбю.ЁЙЦУКЕНГШЩЗХЪФЫВАПРОЛДЖЭЯЧСМИТЬБЮ,"№;:?'
_EN = "`qwertyuiop[]asdfghjkl;'zxcvbnm,./~QWERTYUIOP{}ASDFGHJKL:\"ZXCVBNM<>?@#$^&"
_RU_TO_EN = str.maketrans(_RU, _EN)
_CYRILLIC = re.compile("[\u0400-\u04ff]")

_TRACK2 = re.compile(r";(\d{6,19})(?:=[^?]*)?\?")
_TRACK1 = re.compile(r"%[Bb](\d{6,19})\^[^^?]*\^[^?]*\?")


class InvalidTrack(ValueError):
    pass


@dataclass(frozen=True)
class TrackData:
    number: str
    source: str  # "track1" or "track2"


def normalize_keystrokes(raw: str) -> str:
    text = unicodedata.normalize("NFKC", raw).strip()
    if _CYRILLIC.search(text):
        text = text.translate(_RU_TO_EN)
    return text


def parse_track(raw: str) -> TrackData:
    """The card number carried by the swipe; track 2 wins when both tracks are present."""
    text = normalize_keystrokes(raw)
    m2 = _TRACK2.search(text)
    m1 = _TRACK1.search(text)
    if m2 and m1 and m1.group(1) != m2.group(1):
        raise InvalidTrack("track 1 and track 2 carry different card numbers")
    if m2:
        return TrackData(m2.group(1), "track2")
    if m1:
        return TrackData(m1.group(1), "track1")
    raise InvalidTrack("no magnetic-stripe track data found")
