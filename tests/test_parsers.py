"""Property tests for the small parsers in patron.kit: Luhn, phones, magnetic-stripe tracks, money."""

from __future__ import annotations

import unicodedata
from decimal import Decimal

import phonenumbers
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from patron.kit.luhn import check_digit, is_valid, with_check_digit
from patron.kit.money import from_minor, minor_digits, round_money, to_minor
from patron.kit.phones import InvalidPhone, normalize_phone
from patron.kit.track import InvalidTrack, parse_track

digits = st.text(alphabet="0123456789", min_size=1, max_size=30)

# Luhn ------------------------------------------------------------------------------------------


@given(digits)
@example("7800123456789012"[:-1])
@example("0")
def test_check_digit_makes_any_payload_valid(payload):
    number = with_check_digit(payload)
    assert len(number) == len(payload) + 1
    assert is_valid(number)
    # And it is the only digit that does.
    assert [d for d in "0123456789" if is_valid(payload + d)] == [check_digit(payload)]


@given(digits, st.data())
def test_any_single_digit_change_is_detected(payload, data):
    number = with_check_digit(payload)
    i = data.draw(st.integers(0, len(number) - 1))
    new = data.draw(st.sampled_from([d for d in "0123456789" if d != number[i]]))
    assert not is_valid(number[:i] + new + number[i + 1 :])


@given(st.text(alphabet="0123456789", min_size=2, max_size=30), st.data())
def test_adjacent_transpositions_are_detected_except_09(payload, data):
    number = with_check_digit(payload)
    i = data.draw(st.integers(0, len(number) - 2))
    a, b = number[i], number[i + 1]
    assume(a != b)
    swapped = number[:i] + b + a + number[i + 2 :]
    if {a, b} == {"0", "9"}:
        assert is_valid(swapped)  # Luhn's one blind spot
    else:
        assert not is_valid(swapped)


@pytest.mark.parametrize("bad", ["", "7", "12a4", "４２", "-18", " 18", "1.8"])
def test_luhn_refuses_what_is_not_digits(bad):
    assert not is_valid(bad)


def test_check_digit_refuses_non_digits():
    with pytest.raises(ValueError, match="digits"):
        check_digit("12x")


def test_known_luhn_numbers():
    assert is_valid("4111111111111111")
    assert is_valid("79927398713")
    assert not is_valid("79927398710")
    assert check_digit("7992739871") == "3"


# Phones ----------------------------------------------------------------------------------------

REGIONS = ["RU", "KZ", "BY", "CN", "HK", "US", "GB", "DE", "FR", "IN", "AE", "TR", "UZ", "AM", "GE"]
TYPES = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]


@st.composite
def phone_numbers(draw):  # type: ignore[no-untyped-def]
    """Real-looking numbers: a region's example number with its last digits changed, kept valid."""
    region = draw(st.sampled_from(REGIONS))
    kind = draw(st.sampled_from(TYPES))
    example = phonenumbers.example_number_for_type(region, kind)
    assume(example is not None)
    national = str(example.national_number)
    tail = draw(st.text(alphabet="0123456789", min_size=3, max_size=3))
    candidate = phonenumbers.parse(f"+{example.country_code}{national[:-3]}{tail}", None)
    assume(phonenumbers.is_valid_number(candidate))
    return region, candidate


FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
    phonenumbers.PhoneNumberFormat.RFC3966,
]


@settings(deadline=None)
@given(phone_numbers(), st.sampled_from(REGIONS))
def test_normalising_is_idempotent(sample, other_region):
    region, number = sample
    once = normalize_phone(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL), region)
    assert normalize_phone(once, region) == once
    # E.164 carries its country, so the programme's region no longer matters.
    assert normalize_phone(once, other_region) == once


@settings(deadline=None)
@given(phone_numbers(), st.data())
def test_formatted_variants_normalise_equally(sample, data):
    region, number = sample
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    for fmt in FORMATS:
        text = phonenumbers.format_number(number, fmt)
        assert normalize_phone(text, region) == e164
        # The way people type them: other separators, extra spaces.
        messy = data.draw(st.sampled_from([text.replace(" ", "-"), f"  {text} ", text.replace("-", " ")]))
        assert normalize_phone(messy, region) == e164
    # Dialled from abroad, with the international prefix written out.
    assert normalize_phone(f"00{e164[1:]}", "DE") == e164


@settings(deadline=None)
@given(phone_numbers())
def test_round_trip_through_phonenumbers_formats(sample):
    region, number = sample
    e164 = normalize_phone(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL), region)
    parsed = phonenumbers.parse(e164, None)
    assert parsed == number
    assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == e164


@given(st.text(alphabet="abcdefghij!?*#", max_size=20))
def test_text_without_digits_is_not_a_phone(text):
    with pytest.raises(InvalidPhone):
        normalize_phone(text, "RU")


@pytest.mark.parametrize("text", ["", "1", "12", "123", "+7", "+7 916 123", "+999 1234567", "8 916 123 45 67 8"])
def test_impossible_phones_are_refused(text):
    with pytest.raises(InvalidPhone):
        normalize_phone(text, "RU")


# Magnetic-stripe tracks ------------------------------------------------------------------------

EN = "`qwertyuiop[]asdfghjkl;'zxcvbnm,./~QWERTYUIOP{}ASDFGHJKL:\"ZXCVBNM<>?@#$^&"
RU = 'ёйцукенгшщзхъфывапролджэячсмитьбю.ЁЙЦУКЕНГШЩЗХЪФЫВАПРОЛДЖЭЯЧСМИТЬБЮ,"№;:?'
TO_RU = str.maketrans(EN, RU)

pans = st.text(alphabet="0123456789", min_size=6, max_size=19)
names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ /.", max_size=26)
discretionary = st.text(alphabet="0123456789", max_size=20)
# Keystrokes around a swipe (an operator's typing, a scanner prefix): letters, digits and spaces,
# nothing that starts or ends a track.
noise = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_+", max_size=15)


@st.composite
def swipes(draw):  # type: ignore[no-untyped-def]
    pan = draw(pans)
    expiry = draw(st.text(alphabet="0123456789", min_size=4, max_size=4))
    track1 = f"%{draw(st.sampled_from('Bb'))}{pan}^{draw(names)}^{expiry}{draw(discretionary)}?"
    track2 = f";{pan}={expiry}{draw(discretionary)}?"
    if draw(st.booleans()):
        track2 = f";{pan}?"  # no separator, no expiry
    tracks = draw(st.sampled_from([track1, track2, track1 + track2]))
    return pan, draw(noise) + tracks + draw(st.sampled_from(["", "\n", "\r\n", "\t"])) + draw(noise)


def full_width(text: str, which: list[bool]) -> str:
    return "".join(
        chr(ord(c) + 0xFEE0) if "!" <= c <= "~" and pick else c for c, pick in zip(text, which, strict=False)
    )


@given(swipes())
def test_swipe_parses_back_to_the_pan(swipe):
    pan, raw = swipe
    assert parse_track(raw).number == pan


@given(swipes())
def test_swipe_typed_with_a_russian_layout_parses_back(swipe):
    pan, raw = swipe
    typed = raw.translate(TO_RU)
    assert parse_track(typed).number == pan


@given(swipes(), st.data())
def test_swipe_typed_in_full_width_parses_back(swipe, data):
    pan, raw = swipe
    which = data.draw(st.lists(st.booleans(), min_size=len(raw), max_size=len(raw)))
    assert parse_track(full_width(raw, which)).number == pan


def test_examples_from_the_till():
    pan = "7800123456789012"
    assert parse_track(f";{pan}=2512?").number == pan
    assert parse_track(f"ж{pan}=2512,").number == pan
    assert parse_track(f"%И{pan}:ТФЬУ:2512,").number == pan
    assert parse_track(f"；{pan}＝2512？").number == pan
    both = parse_track(f"%B{pan}^IVANOV/IVAN^2512?;{pan}=2512?")
    assert (both.number, both.source) == (pan, "track2")
    assert parse_track(f"%B{pan}^IVANOV/IVAN^2512?").source == "track1"


def _opens_no_track(text: str) -> bool:
    # After the parser's own clean-up (NFKC, then Russian layout), nothing may open a track.
    return not any(ch in unicodedata.normalize("NFKC", text) for ch in ";%жЖ")


garbage = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40).filter(_opens_no_track)


@given(garbage)
@example("")
@example("7800123456789012")
@example("hello world")
def test_garbage_raises_invalid_track(text):
    with pytest.raises(InvalidTrack):
        parse_track(text)


@given(st.text(alphabet=";%?=^Bb0123456789 ж,", max_size=60))
def test_parser_never_invents_a_number(text):
    try:
        found = parse_track(text)
    except InvalidTrack:
        return
    assert 6 <= len(found.number) <= 19
    assert found.number in text


@pytest.mark.parametrize(
    "text",
    [
        ";12345?",  # too short for a card number
        ";78001234567890123456?",  # too long
        ";7800123456789012",  # never ends
        "%B7800123456789012^NAME?",  # track 1 without its second separator
        "%B7800123456789012^NAME^2512",  # never ends
        ";7800-1234-5678-9012?",
        "%B7800123456789012^A^1?;4111111111111111=1?",  # the two tracks disagree
    ],
)
def test_broken_tracks_raise_invalid_track(text):
    with pytest.raises(InvalidTrack):
        parse_track(text)


# Money -----------------------------------------------------------------------------------------

CURRENCIES = ["RUB", "USD", "EUR", "CNY", "KZT", "JPY", "KRW", "BHD", "KWD", "CLF"]


@given(st.sampled_from(CURRENCIES), st.integers(-(10**15), 10**15))
def test_minor_units_round_trip(currency, minor):
    amount = from_minor(minor, currency)
    assert amount.as_tuple().exponent == -minor_digits(currency)
    assert to_minor(amount, currency) == minor
    assert to_minor(Decimal(str(amount)), currency) == minor
    assert from_minor(to_minor(amount, currency), currency) == amount


@given(st.sampled_from(CURRENCIES), st.integers(-(10**15), 10**15), st.integers(1, 4))
def test_amounts_finer_than_the_minor_unit_are_refused(currency, minor, extra):
    places = minor_digits(currency) + extra
    amount = Decimal(minor * 10 + 1).scaleb(-places)  # the last digit is below the minor unit
    with pytest.raises(ValueError, match="more decimals"):
        to_minor(amount, currency)
    rounded = round_money(amount, currency)
    to_minor(rounded, currency)  # representable once rounded
    assert abs(rounded - amount) <= Decimal(5).scaleb(-minor_digits(currency) - 1)


def test_money_examples():
    assert str(from_minor(125000, "RUB")) == "1250.00"
    assert str(from_minor(1250, "JPY")) == "1250"
    assert str(from_minor(1, "BHD")) == "0.001"
    assert to_minor(Decimal("1250.00"), "RUB") == 125000
    assert to_minor(Decimal("1250"), "RUB") == 125000
    assert to_minor(Decimal("12.5"), "RUB") == 1250
    assert str(round_money(Decimal("0.005"), "RUB")) == "0.01"
    assert str(round_money(Decimal("-0.005"), "RUB")) == "-0.01"
    assert str(round_money(Decimal("2.5"), "JPY")) == "3"
    with pytest.raises(ValueError, match="more decimals"):
        to_minor(Decimal("0.5"), "JPY")
