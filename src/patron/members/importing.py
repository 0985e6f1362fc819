"""CSV import of members, in batches, for files of a million rows.

One row is one enrolment through the "import" channel: the same normalisation and checks as
`members.service.enrol` (email, phone in the programme's region, birth date, attributes), the
consent to the programme rules recorded with its version and time, a point account, the base
tier. What differs is the shape of the work, because a per-row `enrol` costs several queries and
a flush per member:

* rows are parsed and normalised outside any transaction, a few batches ahead of the writer, in
  a worker process (see `_parsed_batches`);
* each batch then checks its emails, phones, member numbers and card numbers against the
  database with one query per kind (`lookup`), generates member numbers and referral codes in
  bulk (random, then one query to find the few that are taken), and inserts every table with one
  bulk statement (`COPY` on PostgreSQL, `executemany` elsewhere);
* each batch is its own transaction, so a good row is kept even when a later one is refused, the
  SQLite write lock is held for one batch at a time, and a crash loses at most the batch in
  flight. A batch that loses a race with a concurrent enrolment (unique violation) is rolled
  back and checked again from the database;
* one audit entry is written per import, with the counts, not one per row.

A duplicate inside the file is found through the database as well: the earlier row is already
committed, and it is recognised as this run's by its consent time and its id (UUIDv7, later than
the start of the run). That keeps memory flat however large the file is.

`insert_members` is the bulk path alone (no checks), for callers that generate valid data
themselves, such as `patron demo`.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import itertools
import json
import multiprocessing
import os
import queue
import random
import re
import secrets
import sys
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any, TextIO, TypeVar, get_args

from email_validator.rfc_constants import DOT_ATOM_TEXT
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import JSON, Select, String, Table, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.access.principal import Actor
from patron.audit import service as audit
from patron.cards import service as cards_service
from patron.cards.models import Card
from patron.db import Database
from patron.errors import ValidationFailed
from patron.kit import clock
from patron.kit.ids import DICTATION_ALPHABET, new_id
from patron.kit.luhn import with_check_digit
from patron.kit.phones import InvalidPhone, normalize_phone
from patron.ledger.models import PointAccount
from patron.members import service as members_service
from patron.members.models import ConsentEvent, Member
from patron.members.schemas import AttrKey, Language
from patron.program import service as program_service
from patron.tiers.models import Tier

T = TypeVar("T")

BATCH_SIZE = 2000
CHANNEL = "import"
MARKETING = members_service.MARKETING
ATTRIBUTE_PREFIX = "attribute."
# The columns a person writes by hand; the export adds the rest of COLUMNS.
MEMBER_COLUMNS = ("first_name", "last_name", "email", "phone", "birth_date", "language", "card", *MARKETING)
COLUMNS = ("number", *MEMBER_COLUMNS, "status", "tier", "enrolled_at", "points_available")
# Read but not imported: balances come with the points engine; line/reason are what --errors adds.
IGNORED_COLUMNS = ("points_available", "line", "reason")
LANGUAGES = frozenset(get_args(Language))
STATUSES = ("active", "blocked")
IMPORTED_BLOCK_REASON = "blocked in the imported file"
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_LENGTH = 500
NAME_LENGTH = 100
KEPT_REFUSALS = 1000

_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f", ""})
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_attr_key = TypeAdapter(AttrKey)
_system_random = secrets.SystemRandom()


@dataclass(slots=True)
class NewMember:
    """One member ready to insert: every value already normalised and checked."""

    first_name: str
    last_name: str
    email: str | None
    phone: str | None
    birth_date: date | None = None
    language: str = "en"
    attributes: dict[str, str] = field(default_factory=dict)
    marketing_email: bool = False
    marketing_sms: bool = False
    marketing_push: bool = False
    card: str | None = None
    number: str | None = None
    referral_code: str | None = None
    status: str = "active"
    block_reason: str | None = None
    tier_code: str | None = None
    enrolled_at: datetime | None = None
    channel: str = CHANNEL
    location: str | None = None
    id: uuid.UUID | None = None  # given by insert_members when None

    def __reduce__(self) -> tuple[type[NewMember], tuple[Any, ...]]:
        # Pickled by value, field by field: six times quicker than a slotted dataclass's default,
        # which matters when worker processes hand back a batch.
        return (NewMember, tuple(getattr(self, name) for name in self.__slots__))


@dataclass(frozen=True, slots=True)
class Refusal:
    line: int
    reason: str
    values: list[str]


@dataclass
class ImportReport:
    imported: int = 0
    refused: int = 0
    # The first KEPT_REFUSALS only; `on_refused` sees every one.
    refusals: list[Refusal] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    with_points: int = 0  # rows with a points_available balance, which is not imported


class RowRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# The file -----------------------------------------------------------------------------------


class MemberCsv:
    """A members CSV: the header checked up front, then the rows with the line they start on.

    Comma or semicolon separated (a spreadsheet in a Russian locale writes semicolons), UTF-8 with
    or without a BOM when the caller opens it with encoding="utf-8-sig" and newline="".
    """

    def __init__(self, lines: Iterable[str]) -> None:
        it = iter(lines)
        first = next(it, "")
        if not first.strip():
            raise ValidationFailed("the file is empty; the first line must name the columns", field="file")
        delimiter = ";" if first.count(";") > first.count(",") else ","
        self._reader = csv.reader(itertools.chain([first], it), delimiter=delimiter)
        self.delimiter = delimiter
        self.header = [name.strip() for name in next(self._reader)]
        self.fields: list[str | None] = []  # per position: a field name, "attribute.x", or None (ignored)
        self.ignored: list[str] = []
        seen: set[str] = set()
        for raw in self.header:
            if raw.lower().startswith(ATTRIBUTE_PREFIX):
                key = raw[len(ATTRIBUTE_PREFIX) :]
                try:
                    _attr_key.validate_python(key)
                except ValidationError as exc:
                    raise ValidationFailed(
                        f"column {raw!r}: an attribute name has 1 to 60 letters, digits, '_', '.' or '-'",
                        field="header",
                    ) from exc
                name = ATTRIBUTE_PREFIX + key
            else:
                name = raw.lower()
                if name in IGNORED_COLUMNS:
                    self.ignored.append(name)
                    self.fields.append(None)
                    continue
                if name not in COLUMNS:
                    raise ValidationFailed(
                        f"unknown column {raw!r}; the columns are {', '.join(COLUMNS)} and attribute.NAME",
                        field="header",
                    )
            if name in seen:
                raise ValidationFailed(f"column {raw!r} appears twice", field="header")
            seen.add(name)
            self.fields.append(name)
        missing = [c for c in ("first_name", "last_name") if c not in seen]
        if missing:
            raise ValidationFailed(f"the file needs the column(s) {', '.join(missing)}", field="header")
        if "email" not in seen and "phone" not in seen:
            raise ValidationFailed("the file needs an email or a phone column (or both)", field="header")

    def header_index(self, name: str) -> int | None:
        lowered = [h.lower() for h in self.header]
        return lowered.index(name) if name in lowered else None

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(line number where the row starts, its fields); blank lines are skipped."""
        reader = self._reader
        last = reader.line_num
        for values in reader:
            start, last = last + 1, reader.line_num
            if values and any(v.strip() for v in values):
                yield start, values


class RefusalWriter:
    """The refused rows as CSV: line, reason, then the row as it was read. Fixed, it imports again."""

    def __init__(self, out: TextIO, csvfile: MemberCsv) -> None:
        # A file of refused rows being imported again already has line and reason: not twice.
        self._keep = [i for i, name in enumerate(csvfile.header) if name.lower() not in ("line", "reason")]
        self._width = len(csvfile.header)
        self._writer = csv.writer(out, delimiter=csvfile.delimiter)
        self._writer.writerow(["line", "reason", *(csvfile.header[i] for i in self._keep)])

    def __call__(self, refusal: Refusal) -> None:
        values = refusal.values
        kept = [values[i] if i < len(values) else "" for i in self._keep]
        self._writer.writerow([refusal.line, refusal.reason, *kept, *values[self._width :]])


# One row --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowRules:
    """What parsing a row needs to know about the programme; read once per import."""

    phone_region: str
    tiers: frozenset[str]


def rules_for(session: Session) -> RowRules:
    return RowRules(
        phone_region=program_service.get(session).phone_region,
        tiers=frozenset(session.scalars(select(Tier.code))),
    )


def _bool(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise RowRefused(f"bad {name}: {text!r} is not true/false, yes/no or 1/0")


def _name(fields: dict[str, str], name: str) -> str:
    value = fields.get(name, "").strip()
    if not value:
        raise RowRefused(f"missing {name}")
    if len(value) > NAME_LENGTH:
        raise RowRefused(f"{name} is longer than {NAME_LENGTH} characters")
    return value


def parse_row(columns: Sequence[str | None], values: list[str], rules: RowRules) -> NewMember:
    """One row as a NewMember, or RowRefused naming every problem found in it.

    `columns` names each position of the row (MemberCsv.fields): a column, attribute.NAME, or None.
    """
    if len(values) > len(columns):
        raise RowRefused(f"the row has {len(values)} fields, the header {len(columns)}")
    fields: dict[str, str] = {}
    attributes: dict[str, str] = {}
    for name, value in zip(columns, values, strict=False):
        if name is None:
            continue
        if name.startswith(ATTRIBUTE_PREFIX):
            if value.strip():
                attributes[name[len(ATTRIBUTE_PREFIX) :]] = value.strip()
        else:
            fields[name] = value
    problems: list[str] = []

    def check(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except RowRefused as exc:
            problems.append(exc.reason)
            return None

    first_name = check(lambda: _name(fields, "first_name"))
    last_name = check(lambda: _name(fields, "last_name"))
    email = check(lambda: _email(fields.get("email", "")))
    phone = check(lambda: _phone(fields.get("phone", ""), rules.phone_region))
    if not fields.get("email", "").strip() and not fields.get("phone", "").strip():
        problems.append("needs an email or a phone")
    birth_date = check(lambda: _birth_date(fields.get("birth_date", "")))
    language = fields.get("language", "").strip().lower() or "en"
    if language not in LANGUAGES:
        problems.append(f"bad language: {language!r} is not one of {', '.join(sorted(LANGUAGES))}")
    card = check(lambda: _card(fields.get("card", "")))

    def flag(kind: str) -> bool:
        return bool(check(lambda: _bool(kind, fields.get(kind, ""))))

    marketing_email, marketing_sms, marketing_push = (
        flag("marketing_email"),
        flag("marketing_sms"),
        flag("marketing_push"),
    )
    if len(attributes) > MAX_ATTRIBUTES:
        problems.append(f"more than {MAX_ATTRIBUTES} attributes")
    for key, value in attributes.items():
        if len(value) > MAX_ATTRIBUTE_LENGTH:
            problems.append(f"attribute.{key} is longer than {MAX_ATTRIBUTE_LENGTH} characters")
    number = fields.get("number", "").strip() or None
    if number is not None and not (number.isdigit() and number.isascii() and len(number) <= 20):
        problems.append("bad number: a member number has up to 20 digits")
    status = fields.get("status", "").strip().lower() or "active"
    if status not in STATUSES:
        problems.append(f"bad status: {status!r} is not active or blocked")
    tier = fields.get("tier", "").strip() or None
    if tier is not None and tier not in rules.tiers:
        problems.append(f"unknown tier {tier!r}")
    enrolled_at = check(lambda: _instant("enrolled_at", fields.get("enrolled_at", "")))
    if problems:
        raise RowRefused("; ".join(problems))
    return NewMember(
        first_name=first_name,
        last_name=last_name,
        email=email,
        phone=phone,
        birth_date=birth_date,
        language=language,
        attributes=attributes,
        card=card,
        number=number,
        status=status,
        block_reason=IMPORTED_BLOCK_REASON if status == "blocked" else None,
        tier_code=tier,
        enrolled_at=enrolled_at,
        marketing_email=marketing_email,
        marketing_sms=marketing_sms,
        marketing_push=marketing_push,
    )


@lru_cache(maxsize=4096)
def _email_domain(domain: str) -> str | None:
    try:
        return members_service.normalize_email("x@" + domain).partition("@")[2]
    except ValidationFailed:
        return None


def _email(text: str) -> str | None:
    """members.service.normalize_email, with a fast path for the common case, the same answer.

    email_validator checks the part before the @ and the domain independently, then the length. A
    plain ASCII local part (its own DOT_ATOM_TEXT rule) on a domain already seen valid and unchanged
    by normalisation needs neither check again; anything else takes the full validation. That
    saves nearly all the time email validation takes in an import.
    """
    text = text.strip()
    if not text:
        return None
    local, at, domain = text.rpartition("@")
    if at and len(text) <= 254 and DOT_ATOM_TEXT.match(local) and domain.isascii():
        normalized = _email_domain(domain)
        if normalized is not None and normalized == domain.lower():
            return text.lower()
    try:
        return members_service.normalize_email(text)
    except ValidationFailed as exc:
        raise RowRefused(f"bad email: {exc.detail}") from exc


def _phone(text: str, region: str) -> str | None:
    if not text.strip():
        return None
    try:
        return normalize_phone(text.strip(), region)
    except InvalidPhone as exc:
        raise RowRefused("bad phone: not a valid phone number") from exc


def _birth_date(text: str) -> date | None:
    text = text.strip()
    if not text:
        return None
    try:
        if not _DATE.match(text):
            raise ValueError(text)
        value = date.fromisoformat(text)
    except ValueError as exc:
        raise RowRefused(f"bad birth_date: {text!r} is not a date as YYYY-MM-DD") from exc
    try:
        members_service._check_birth_date(value)  # the enrolment's own rule
    except ValidationFailed as exc:
        raise RowRefused(f"bad birth_date: {exc.detail}") from exc
    return value


def _card(text: str) -> str | None:
    if not text.strip():
        return None
    try:
        return cards_service.loyalty_number(text, field="card")
    except ValidationFailed as exc:
        raise RowRefused(f"bad card: {exc.detail}") from exc


def _instant(name: str, text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise RowRefused(f"bad {name}: {text!r} is not an RFC 3339 time") from exc
    if value.tzinfo is None:
        raise RowRefused(f"bad {name}: the time needs an offset, e.g. 2026-05-01T10:00:00+03:00")
    return value


# Codes ---------------------------------------------------------------------------------------


def member_number(rng: random.Random) -> str:
    # The format of members.service.new_member_number: "1", eight digits, a Luhn check digit.
    return with_check_digit(f"1{rng.randrange(10**8):08d}")


_REFERRAL_LENGTH = 8
_REFERRAL_SPACE = len(DICTATION_ALPHABET) ** _REFERRAL_LENGTH


def referral_code(rng: random.Random) -> str:
    # The format of members.service.new_referral_code, from one random draw instead of eight.
    value, out = rng.randrange(_REFERRAL_SPACE), []
    for _ in range(_REFERRAL_LENGTH):
        value, digit = divmod(value, len(DICTATION_ALPHABET))
        out.append(DICTATION_ALPHABET[digit])
    return "".join(out)


def lookup(session: Session, column: Any, values: Collection[str], *columns: Any) -> Select[Any]:
    """SELECT `columns` of the rows whose `column` is one of `values`.

    On PostgreSQL a join with unnest(array): the planner makes it index lookups even when the
    table statistics are stale, as they are in the middle of a big import, where an IN list gets a
    sequential scan per batch and the import slows down as the table grows.
    """
    if session.get_bind().dialect.name == "postgresql":
        keys = (
            func.unnest(bindparam("keys", list(values), type_=ARRAY(String())))
            .table_valued("key")
            .render_derived("keys")
        )
        return select(*columns).select_from(keys).join(column.class_, column == keys.c.key)
    return select(*columns).where(column.in_(values))


def _free_codes(session: Session, column: Any, count: int, make: Callable[[], str], avoid: set[str]) -> list[str]:
    """`count` new codes that neither the database nor `avoid` holds: one query per round."""
    codes: set[str] = set()
    while len(codes) < count:
        fresh: set[str] = set()
        while len(codes) + len(fresh) < count:
            code = make()
            if code not in avoid and code not in codes:
                fresh.add(code)
        fresh -= set(session.scalars(lookup(session, column, fresh, column)))
        codes |= fresh
    return list(codes)


def assign_codes(session: Session, rows: Sequence[NewMember], rng: random.Random | None = None) -> None:
    """Give a member number and a referral code to every row that has none, without a query per row."""
    rng = rng or _system_random
    without_number = [r for r in rows if r.number is None]
    given = {r.number for r in rows if r.number is not None}
    for row, number in zip(
        without_number,
        _free_codes(session, Member.number, len(without_number), lambda: member_number(rng), given),
        strict=True,
    ):
        row.number = number
    without_code = [r for r in rows if r.referral_code is None]
    for row, code in zip(
        without_code,
        _free_codes(session, Member.referral_code, len(without_code), lambda: referral_code(rng), set()),
        strict=True,
    ):
        row.referral_code = code


# Bulk insert ---------------------------------------------------------------------------------


def _complete(table: Table, rows: list[dict[str, Any]]) -> list[str]:
    """Fill the columns the rows leave out from the model's Python defaults; the column names."""
    present = set(rows[0])
    for column in table.columns:
        if column.name in present or column.default is None:
            continue
        default: Any = column.default
        if default.is_scalar:
            for row in rows:
                row[column.name] = default.arg
        elif default.is_callable:
            for row in rows:
                row[column.name] = default.arg(None)
        else:
            continue
        present.add(column.name)
    return [c.name for c in table.columns if c.name in present]


def bulk_insert(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows of plain values into `table`: COPY on PostgreSQL, executemany elsewhere."""
    if not rows:
        return
    names = _complete(table, rows)
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(table), rows)
        return
    from psycopg import IntegrityError as PgIntegrityError
    from psycopg import sql

    json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
    raw = session.connection().connection.driver_connection
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, names))
    )
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row([json.dumps(row[n]) if n in json_columns else row[n] for n in names])
    except PgIntegrityError as exc:  # the same exception the executemany path raises
        raise IntegrityError(str(statement), None, exc) from exc


def insert_members(
    session: Session,
    rows: Sequence[NewMember],
    *,
    rules_version: str,
    base_tier: str,
    consented_at: datetime | None = None,
    free_cards: dict[str, uuid.UUID] | None = None,
) -> None:
    """Insert checked members with their point accounts, consent records and loyalty cards.

    Every row needs its number and referral code (`assign_codes`). Consent to the programme
    rules is recorded at `consented_at`, or at the member's enrolment when not given. A card
    number found in `free_cards` (an issued card nobody holds) is given to the member; any other
    card number is created as a new active card.
    """
    free_cards = free_cards or {}
    members: list[dict[str, Any]] = []
    accounts: list[dict[str, Any]] = []
    consents: list[dict[str, Any]] = []
    new_cards: list[dict[str, Any]] = []
    taken_cards: list[dict[str, Any]] = []
    now = clock.now()
    for r in rows:
        if r.id is None:
            r.id = new_id()
        enrolled = r.enrolled_at or now
        consent_time = consented_at or enrolled
        members.append(
            {
                "id": r.id,
                "number": r.number,
                "first_name": r.first_name,
                "last_name": r.last_name,
                "name_key": members_service.name_key(r.first_name, r.last_name),
                "email": r.email,
                "phone": r.phone,
                "birth_date": r.birth_date,
                "language": r.language,
                "status": r.status,
                "channel": r.channel,
                "location": r.location,
                "tier_code": r.tier_code or base_tier,
                "referral_code": r.referral_code,
                "referred_by_id": None,
                "attributes": r.attributes,
                "rules_version": rules_version,
                "rules_accepted_at": consent_time,
                "marketing_email": r.marketing_email,
                "marketing_sms": r.marketing_sms,
                "marketing_push": r.marketing_push,
                "block_reason": r.block_reason,
                "enrolled_at": enrolled,
                "updated_at": now,
            }
        )
        accounts.append({"member_id": r.id, "updated_at": now})
        consents.append(_consent(r, "program_rules", rules_version, consent_time))
        consents.extend(_consent(r, kind, None, consent_time) for kind in MARKETING if getattr(r, kind))
        if r.card is None:
            continue
        if r.card in free_cards:
            taken_cards.append({"card_id": free_cards[r.card], "holder": r.id, "at": now})
        else:
            new_cards.append(
                {
                    "id": new_id(),
                    "kind": "loyalty",
                    "number": r.card,
                    "pan_hash": None,
                    "last4": None,
                    "status": "active",
                    "member_id": r.id,
                    "replaced_by_id": None,
                    "block_reason": None,
                    "created_at": enrolled,
                    "updated_at": now,
                }
            )
    bulk_insert(session, Member.__table__, members)  # type: ignore[arg-type]
    bulk_insert(session, PointAccount.__table__, accounts)  # type: ignore[arg-type]
    bulk_insert(session, ConsentEvent.__table__, consents)  # type: ignore[arg-type]
    bulk_insert(session, Card.__table__, new_cards)  # type: ignore[arg-type]
    if taken_cards:
        cards: Table = Card.__table__  # type: ignore[assignment]
        session.execute(
            update(cards)
            .where(cards.c.id == bindparam("card_id"))
            .values(member_id=bindparam("holder"), status="active", updated_at=bindparam("at")),
            taken_cards,
        )


def _consent(r: NewMember, kind: str, rules_version: str | None, at: datetime) -> dict[str, Any]:
    return {
        "id": new_id(),
        "member_id": r.id,
        "kind": kind,
        "granted": True,
        "rules_version": rules_version,
        "channel": r.channel,
        "recorded_at": at,
    }


# The import ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    """What identifies this import's own rows in the database, and what every batch shares."""

    started: datetime
    floor: uuid.UUID  # every id this run creates sorts after it (UUIDv7)
    rules_version: str
    base_tier: str

    def made(self, row_id: uuid.UUID, at: datetime | None, channel: str | None = CHANNEL) -> bool:
        return channel == CHANNEL and at == self.started and row_id >= self.floor


def _existing_members(session: Session, column: Any, values: set[str]) -> dict[str, tuple[uuid.UUID, datetime, str]]:
    if not values:
        return {}
    stmt = lookup(session, column, values, column, Member.id, Member.rules_accepted_at, Member.channel)
    return {v: (i, at, ch) for v, i, at, ch in session.execute(stmt)}


def _check_batch(
    session: Session, run: _Run, parsed: list[tuple[int, list[str], NewMember]]
) -> tuple[list[NewMember], list[Refusal], dict[str, uuid.UUID]]:
    """Refuse the rows that clash with the database or with an earlier row of the batch."""
    members = [m for _, _, m in parsed]
    by = {
        "email": _existing_members(session, Member.email, {m.email for m in members if m.email}),
        "phone": _existing_members(session, Member.phone, {m.phone for m in members if m.phone}),
        "number": _existing_members(session, Member.number, {m.number for m in members if m.number}),
    }
    card_numbers = {m.card for m in members if m.card}
    found_cards = (
        session.execute(
            lookup(
                session,
                Card.number,
                card_numbers,
                *(Card.number, Card.id, Card.member_id, Card.status, Member.rules_accepted_at, Member.channel),
            )
            .outerjoin(Member, Member.id == Card.member_id)
            .order_by(Card.id)
            .with_for_update(of=Card)  # a free card is ours until commit
        ).all()
        if card_numbers
        else []
    )
    cards = {c.number: c for c in found_cards}
    accepted: list[NewMember] = []
    refusals: list[Refusal] = []
    free_cards: dict[str, uuid.UUID] = {}
    in_batch: dict[tuple[str, str], int] = {}
    for line, values, m in parsed:
        reasons = []
        for kind, value in (("email", m.email), ("phone", m.phone), ("number", m.number)):
            if value is None:
                continue
            label = "member number" if kind == "number" else kind
            if (kind, value) in in_batch:
                reasons.append(f"duplicate within the file: {label} also on line {in_batch[kind, value]}")
            elif value in by[kind]:
                row_id, at, channel = by[kind][value]
                if run.made(row_id, at, channel):
                    reasons.append(f"duplicate within the file: {label} on an earlier row")
                elif kind == "number":
                    reasons.append("member number already in use")
                else:
                    reasons.append(f"already a member ({kind})")
        if m.card is not None:
            card = cards.get(m.card)
            if ("card", m.card) in in_batch:
                reasons.append(f"duplicate within the file: card also on line {in_batch['card', m.card]}")
            elif card is not None:
                if card.member_id is not None and run.made(card.member_id, card.rules_accepted_at, card.channel):
                    reasons.append("duplicate within the file: card on an earlier row")
                elif card.member_id is not None:
                    reasons.append("card in use by another member")
                elif card.status == "blocked":
                    reasons.append("card is blocked")
                elif card.status == "replaced":
                    reasons.append("card was replaced and cannot be used again")
                else:
                    free_cards[m.card] = card.id
        if reasons:
            refusals.append(Refusal(line, "; ".join(reasons), values))
            continue
        for kind, value in (("email", m.email), ("phone", m.phone), ("number", m.number), ("card", m.card)):
            if value is not None:
                in_batch[kind, value] = line
        accepted.append(m)
    return accepted, refusals, free_cards


def _write_batch(session: Session, run: _Run, parsed: list[tuple[int, list[str], NewMember]]) -> list[Refusal]:
    accepted, refusals, free_cards = _check_batch(session, run, parsed)
    without_number = [m for m in accepted if m.number is None]
    try:
        assign_codes(session, accepted)
        insert_members(
            session,
            accepted,
            rules_version=run.rules_version,
            base_tier=run.base_tier,
            consented_at=run.started,
            free_cards=free_cards,
        )
    except BaseException:
        # The batch will be rolled back and may be tried again: with codes generated afresh.
        for m in without_number:
            m.number = None
        for m in accepted:
            m.referral_code = None
        raise
    return refusals


@dataclass
class _Parsed:
    size: int
    good: list[tuple[int, list[str], NewMember]]
    refused: list[Refusal]
    with_points: int  # rows that carry a balance, which is not imported


@dataclass(frozen=True)
class _BatchParser:
    """Parses one batch of rows; picklable, so that a worker process can do it."""

    columns: tuple[str | None, ...]
    points: int | None  # the position of points_available, if the file has it
    rules: RowRules

    def __call__(self, rows: list[tuple[int, list[str]]]) -> _Parsed:
        batch = _Parsed(len(rows), [], [], 0)
        for line, values in rows:
            try:
                batch.good.append((line, values, parse_row(self.columns, values, self.rules)))
            except RowRefused as exc:
                batch.refused.append(Refusal(line, exc.reason, values))
            if self.points is not None and self.points < len(values) and values[self.points].strip() not in ("", "0"):
                batch.with_points += 1
        return batch


def _parsed_batches(csvfile: MemberCsv, parser: _BatchParser, batch_size: int, processes: int) -> Iterator[_Parsed]:
    """The file's rows, parsed, batch by batch.

    Checking emails and phones costs as much Python time as writing the rows, so on a machine with
    more than one core the batches after the first are parsed in worker processes, a few batches
    ahead of the writer (a thread would share the interpreter lock with it). A file of one batch
    never starts a process.
    """
    batches = batched(csvfile.rows(), batch_size)
    first = next(batches, None)
    if first is None:
        return
    yield parser(first)
    if processes < 1:
        yield from (parser(rows) for rows in batches)
        return
    # fork on Linux: quick, and it needs no importable __main__ as spawn does. Only the forking
    # thread is copied; the child just parses (CPython takes the import lock around a fork).
    method = "fork" if sys.platform == "linux" else "spawn"
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context(method)) as pool:
        pending: collections.deque[Future[_Parsed]] = collections.deque()
        try:
            for rows in batches:
                pending.append(pool.submit(parser, rows))
                if len(pending) > processes + 2:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def import_members(
    db: Database,
    actor: Actor,
    csvfile: MemberCsv,
    *,
    batch_size: int = BATCH_SIZE,
    on_progress: Callable[[int], None] | None = None,
    on_refused: Callable[[Refusal], None] | None = None,
    attempts: int = 3,
    processes: int | None = None,
) -> ImportReport:
    """Import every good row of `csvfile`, batch by batch, and report the refused ones.

    Each batch commits on its own (see the module docstring). The next batches are read and
    parsed while the database works on the current one: in `processes` worker processes (default:
    one on Linux when the machine has more than one core), or in a thread with processes=0.
    `on_progress` gets the number of rows handled after each batch; `on_refused` every refused
    row, after its batch committed. Both are called from the calling thread.
    """

    def start(session: Session) -> tuple[_Run, RowRules]:
        program = program_service.get(session)
        tier = session.scalars(select(Tier.code).order_by(Tier.position).limit(1)).first()
        if tier is None:
            raise RuntimeError("no tiers configured; run `patron migrate`")
        run = _Run(started=clock.now(), floor=new_id(), rules_version=program.rules_version, base_tier=tier)
        return run, rules_for(session)

    run, rules = db.read(start)
    report = ImportReport(ignored_columns=list(csvfile.ignored))

    def write(batch: _Parsed) -> None:
        for attempt in range(1, attempts + 1):
            try:
                clashes = db.write(lambda s: _write_batch(s, run, batch.good))
                break
            except IntegrityError:  # a concurrent enrolment took an email, phone or code: check again
                if attempt == attempts:
                    raise
        report.imported += len(batch.good) - len(clashes)
        report.with_points += batch.with_points
        for refusal in sorted(batch.refused + clashes, key=lambda r: r.line):
            report.refused += 1
            if len(report.refusals) < KEPT_REFUSALS:
                report.refusals.append(refusal)
            if on_refused is not None:
                on_refused(refusal)
        if on_progress is not None:
            on_progress(batch.size)

    def record(**extra: Any) -> None:
        details = {"imported": report.imported, "refused": report.refused, "channel": CHANNEL, **extra}
        db.write(lambda s: audit.record(s, actor, "member.import", "member", None, details))

    try:
        if processes is None:
            processes = 1 if sys.platform == "linux" and (os.cpu_count() or 1) > 1 else 0
        parser = _BatchParser(tuple(csvfile.fields), csvfile.header_index("points_available"), rules)
        for batch in in_background(_parsed_batches(csvfile, parser, batch_size, processes)):
            write(batch)
    except BaseException:
        # The committed batches stay; the audit says how far the import got, if the database lets it.
        with contextlib.suppress(Exception):
            record(interrupted=True)
        raise
    record()
    return report


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of `size` items (the last may be shorter); itertools.batched from Python 3.12."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


def in_background(items: Iterator[T], ahead: int = 2) -> Iterator[T]:
    """Produce `items` in a thread, up to `ahead` in advance.

    Reading and parsing the next batch is Python work; writing the current one is mostly waiting
    for the database, with the GIL released. Overlapping them uses both cores of a small machine
    (the database server takes the other one while this process waits). An exception in the
    thread is raised here; closing this generator early stops the thread.
    """
    box: queue.Queue[Any] = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(_Failed(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator's own cleanup (a worker pool) runs now, not at GC
                close()

    thread = threading.Thread(target=produce, name="patron-prefetch", daemon=True)
    thread.start()
    try:
        while (item := box.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()
