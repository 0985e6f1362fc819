"""The demo members' history in bulk: the rows the services would write, made in Python, written by COPY.

`patron demo` gives every member a history since enrolment (two years at most): the welcome bonus,
visits to their usual service centre with baskets of car services and parts, some paid partly with
points, a few returns and refunds, answered surveys, and the scheduled jobs as a worker runs them
every night. Posting that through the services costs milliseconds per visit, hours for a million
members; this module works out the same rows member by member (`simulate`, a pure function that
worker processes run) and `write` inserts them a chunk of members at a time: COPY on PostgreSQL,
executemany elsewhere.

What a member does (`steps_of`) follows from the seed, the member and `now`. What it does to the
ledger (`_Member`) mirrors the services step by step, with the clock at each step:

* welcome and survey bonuses as `rules.bonuses.award` credits them (`engine.bonus`, spendable at
  once, expiring by the programme's policy from when they happened);
* a purchase as `transactions.post` posts it: matured pending points released first, points
  redeemed from the soonest-expiring lots, points earned as the rules engine reckons them (the
  `Earner`, `engine.earn` compiled for the programme's rules) with the member's tier multiplier
  at the time, as a pending lot; then the immediate upgrade of `tiers.after_purchase`, and the
  answer the till got;
* returns and refunds as `transactions.process_return` takes them back (same shares and
  roundings, reversal from the purchase's own lots first, restore to the lots redeemed from);
* at every midnight in the programme's time zone, release-pending then expire-points, as the jobs
  in `jobs/points.py` do them (one `expire` entry per member and run).

`tests/test_demo.py` posts generated histories through the services and the real jobs and
compares every row with this module's, so the two cannot drift apart unnoticed. Earning rules
restricted to segments are not supported (membership changes over time); other rules, conditions
and tier metrics are.

Ids are UUIDv7 and follow from the seed: member i's rows carry millisecond `id_base_ms + i` and a
counter, so every table's primary key grows at its end and a member's rows sort in the order they
were made, as `new_id()` makes them. Times are whole seconds.
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import JSON, Boolean, Date, Integer, Table, Uuid, bindparam, insert, text, update
from sqlalchemy.orm import Session

from patron.db import UTCDateTime
from patron.kit.money import minor_digits
from patron.ledger import policy
from patron.ledger.models import LedgerEntry, LotAllocation, PointAccount, PointLot
from patron.program import service as program_service
from patron.program.models import Program
from patron.rules import engine
from patron.rules import service as rules
from patron.tiers import service as tiers
from patron.tiers.models import TierChange
from patron.tiers.service import TierInfo
from patron.transactions.models import Transaction, TransactionLine, TransactionReturn
from patron.transactions.service import PURCHASE_RULE_KINDS

DAY = 86_400

# --- What the service centres sell, and how members behave ------------------------------------


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    price: int  # RUB, for an ordinary car in Moscow
    retail: bool = False  # sold over the counter, not fitted: it can come back unused


CATALOGUE = {
    p.sku: p
    for p in (
        Product("SRV-OIL", "Engine oil change", "oil_change", 1500),
        Product("OIL-5W30-1L", "Engine oil 5W-30, 1 L", "oil_change", 950),
        Product("FLT-OIL", "Oil filter", "filters", 690),
        Product("FLT-AIR", "Engine air filter", "filters", 890),
        Product("FLT-CABIN", "Cabin air filter", "filters", 1090),
        Product("SRV-TYRE-FIT", "Seasonal tyre change, per wheel", "tyres", 750),
        Product("SRV-BALANCE", "Wheel balancing, per wheel", "tyres", 350),
        Product("SRV-TYRE-STORE", "Tyre storage for the season", "tyres", 3500),
        Product("TYRE-SUMMER-R16", "Summer tyre 205/55 R16", "tyres", 7900),
        Product("TYRE-WINTER-R16", "Winter tyre 205/55 R16, studded", "tyres", 9400),
        Product("SRV-ALIGN", "Wheel alignment", "tyres", 2900),
        Product("SRV-BRAKES", "Front brake pads replacement", "brakes", 2200),
        Product("BRK-PADS-F", "Front brake pads", "brakes", 3900),
        Product("BRK-DISCS-F", "Front brake discs, pair", "brakes", 8900),
        Product("BRK-FLUID", "Brake fluid change", "brakes", 1900),
        Product("SRV-DIAG", "Computer diagnostics", "diagnostics", 1800),
        Product("SRV-SUSP", "Suspension check", "diagnostics", 1200),
        Product("SRV-WASH", "Exterior wash", "wash", 900),
        Product("SRV-INTERIOR", "Interior cleaning", "wash", 3500),
        Product("SRV-AC", "Air conditioning service", "air_conditioning", 3200),
        Product("BAT-60AH", "Battery 60 Ah", "batteries", 8900),
        Product("BAT-80AH", "Battery 80 Ah", "batteries", 12900),
        Product("SRV-BAT-FIT", "Battery fitting", "batteries", 500),
        Product("PRT-WIPERS", "Wiper blades, pair", "accessories", 1600, retail=True),
        Product("PRT-SCREENWASH", "Screenwash -25 °C, 4 L", "accessories", 450, retail=True),
        Product("PRT-BULB-H7", "Headlight bulb H7", "accessories", 490, retail=True),
        Product("PRT-FRESHENER", "Air freshener", "accessories", 350, retail=True),
    )
}
# Why members come, by weight; some reasons have a season (month: factor).
VISITS = (("oil", 30), ("tyres", 10), ("brakes", 8), ("diagnostics", 10), ("wash", 16), ("ac", 4), ("battery", 3))
SEASONS = {
    "tyres": {3: 4, 4: 6, 5: 2, 10: 6, 11: 5, 12: 2},
    "ac": {5: 2, 6: 3, 7: 3, 8: 2},
    "battery": {11: 2, 12: 3, 1: 3, 2: 2},
}
# Dearer cars pay more for the same work and parts; Moscow more than the regions.
MAKE_PRICES = {"BMW": 1.7, "Mercedes-Benz": 1.8, "Toyota": 1.2, "Volkswagen": 1.15, "Skoda": 1.1, "Mazda": 1.1}
MAKE_PRICES |= {"Nissan": 1.1, "Lada": 0.75, "Renault": 0.9}
LOCATION_PRICES = {"MSK-03": 0.97, "SPB-01": 0.95, "KZN-01": 0.85}
# How often members come back, on average (days): regulars, ordinary members, occasional ones.
PROFILES = ((32, 22), (70, 48), (160, 30))
REDEEM_FROM = 500  # members pay with points once they have this many,
REDEEM_SHARE = 0.45  # at this share of their visits, up to half the bill
RETURN_SHARE = 0.08  # of the visits with goods sold over the counter
REFUND_SHARE = 0.01  # of the visits: a goodwill refund of part of the bill
SURVEY_SHARE = 0.12  # of the visits

# The months of the visit reasons, as (reasons, weights) per month, computed once.
# Cumulative weights, as random.choices would compute them from the weights on every call.
_REASONS = {
    month: ([r for r, _ in VISITS], list(itertools.accumulate(w * SEASONS.get(r, {}).get(month, 1) for r, w in VISITS)))
    for month in range(1, 13)
}
_PROFILE_DAYS = [days for days, _ in PROFILES]
_PROFILE_WEIGHTS = list(itertools.accumulate(w for _, w in PROFILES))


class Subject(NamedTuple):
    """A demo member, as far as their history needs to know them."""

    ordinal: int  # the member's place in the plan
    id: str
    number: str
    enrolled_at: int  # epoch seconds
    channel: str
    location: str | None
    car_make: str | None


@dataclass(frozen=True)
class Params:
    """What every history of one demo shares."""

    seed: int
    now: int  # epoch seconds: nothing happens after it
    first_day: date  # the earliest local day a member can have enrolled on
    locations: tuple[tuple[str, int], ...]  # (code, weight): where members without one go
    actor_kind: str
    actor_id: str | None
    id_base_ms: int  # member i's ids carry millisecond id_base_ms + i


# Kinds of step, in the order a member's steps sort when two have the same time (never, in practice).
WELCOME, PURCHASE, RETURN, REFUND, SURVEY = "welcome", "purchase", "return", "refund", "survey"


class Step(NamedTuple):
    posted: int  # when the till (or app) sent it: the clock of the services
    kind: str
    at: int  # when it happened (occurred_at)
    visit: int  # the purchase it belongs to (all kinds but welcome)
    lines: tuple[tuple[str, int, int], ...] = ()  # (sku, quantity, unit price RUB): bought or returned
    refund: int = 0  # RUB


# --- Local days ---------------------------------------------------------------------------------


class Calendar:
    """The programme's local days from `first` to `last`: midnights and opening times as epoch
    seconds, and months, so that a history needs no time-zone arithmetic per visit."""

    def __init__(self, timezone: str, first: date, last: date) -> None:
        zone = ZoneInfo(timezone)
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        self.midnights = [int(datetime(d.year, d.month, d.day, tzinfo=zone).timestamp()) for d in days]
        self.opening = [int(datetime(d.year, d.month, d.day, 9, tzinfo=zone).timestamp()) for d in days]
        self.months = [d.month for d in days]
        self.end = self.midnights[-1] + DAY  # about: past the last day

    @classmethod
    def of(cls, timezone: str, params: Params) -> Calendar:
        """The days a demo's histories can touch: from before the first enrolment to a little
        after `now`, where the last returns and the last visit's next one may fall."""
        now_day = datetime.fromtimestamp(params.now, ZoneInfo(timezone)).date()
        return cls(timezone, params.first_day - timedelta(days=2), now_day + timedelta(days=16))

    def day(self, t: int) -> int:
        """The index of the local day `t` falls on (t within the calendar)."""
        return bisect.bisect_right(self.midnights, t) - 1

    def next_midnight(self, t: int) -> int | None:
        """The first local midnight at or after `t`, if the calendar has it."""
        i = bisect.bisect_left(self.midnights, t)
        return self.midnights[i] if i < len(self.midnights) else None


# --- What a member does -------------------------------------------------------------------------


def _basket(rng: random.Random, reason: str, month: int, prices: float) -> tuple[tuple[str, int, int], ...]:
    picked: list[tuple[str, int]] = []

    def maybe(share: float, sku: str, quantity: int = 1) -> None:
        if rng.random() < share:
            picked.append((sku, quantity))

    if reason == "oil":
        picked += [("SRV-OIL", 1), ("OIL-5W30-1L", rng.choice((4, 4, 5))), ("FLT-OIL", 1)]
        maybe(0.4, "FLT-AIR")
        maybe(0.3, "FLT-CABIN")
    elif reason == "tyres":
        picked += [("SRV-TYRE-FIT", 4), ("SRV-BALANCE", 4)]
        maybe(0.15, "TYRE-WINTER-R16" if month in (9, 10, 11, 12, 1, 2) else "TYRE-SUMMER-R16", 4)
        maybe(0.4, "SRV-TYRE-STORE")
        maybe(0.1, "SRV-ALIGN")
    elif reason == "brakes":
        picked += [("SRV-BRAKES", 1), ("BRK-PADS-F", 1)]
        maybe(0.35, "BRK-DISCS-F")
        maybe(0.25, "BRK-FLUID")
    elif reason == "diagnostics":
        picked.append(("SRV-DIAG", 1))
        maybe(0.5, "SRV-SUSP")
        maybe(0.2, "SRV-ALIGN")
    elif reason == "wash":
        picked.append(("SRV-WASH", 1))
        maybe(0.35, "SRV-INTERIOR")
    elif reason == "ac":
        picked.append(("SRV-AC", 1))
        maybe(0.4, "FLT-CABIN")
    else:  # battery
        picked += [("BAT-80AH" if prices >= 1.15 else "BAT-60AH", 1), ("SRV-BAT-FIT", 1)]
    if reason != "wash":
        maybe(0.12, "SRV-WASH")
    maybe(0.12 if month in (10, 11, 12, 1, 2, 3) else 0.04, "PRT-SCREENWASH")
    maybe(0.08 if month in (3, 4, 10, 11) else 0.04, "PRT-WIPERS")
    maybe(0.05, "PRT-BULB-H7", 2)
    maybe(0.06, "PRT-FRESHENER")
    lines = []
    for sku, quantity in picked:
        price = CATALOGUE[sku].price
        # Brands and sizes differ: goods vary in price a little, labour follows the price list.
        brand = rng.uniform(0.9, 1.15) if not sku.startswith("SRV-") else 1.0
        lines.append((sku, quantity, max(10, round(price * prices * brand / 10) * 10)))
    return tuple(lines)


def steps_of(subject: Subject, params: Params, calendar: Calendar, rng: random.Random) -> tuple[str, list[Step]]:
    """Where member `subject` usually goes, and what they did from enrolment until `now`, in the
    order the services saw it."""
    if subject.location is not None:
        location = subject.location
    else:
        codes, shares = zip(*params.locations, strict=True)
        location = rng.choices(codes, cum_weights=list(itertools.accumulate(shares)))[0]
    prices = MAKE_PRICES.get(subject.car_make or "", 1.0) * LOCATION_PRICES.get(location, 1.0)
    gap = rng.choices(_PROFILE_DAYS, cum_weights=_PROFILE_WEIGHTS)[0]
    end = params.now - 3600  # the last visit starts before this
    enrolled = subject.enrolled_at
    steps = [Step(enrolled, WELCOME, enrolled, 0)]

    def opening_hours(t: int, after: int) -> int:
        """A time within opening hours on t's local day, some minutes after `after`."""
        minutes, wait = rng.randrange(11 * 60), rng.randint(20, 90)  # drawn wherever t falls
        if t >= calendar.end:  # beyond the demo: never reached
            return t
        return max(calendar.opening[calendar.day(t)] + 60 * minutes, after + 60 * wait)

    if subject.channel == "pos" and rng.random() < 0.85:  # enrolled at the till, paying for a visit
        at = enrolled + 60 * rng.randint(5, 40)
    else:
        at = opening_hours(enrolled + int(DAY * rng.expovariate(1 / gap)), enrolled)
    visit = 0
    while at < end:
        visit += 1
        month = calendar.months[calendar.day(at)]
        reasons, weights = _REASONS[month]
        lines = _basket(rng, rng.choices(reasons, cum_weights=weights)[0], month, prices)
        steps.append(Step(at + 60 * rng.randint(1, 6), PURCHASE, at, visit, lines))
        retail = [line for line in lines if CATALOGUE[line[0]].retail]
        if retail and rng.random() < RETURN_SHARE:
            back = opening_hours(at + int(DAY * rng.uniform(1, 10)), at)
            steps.append(Step(back, RETURN, back, visit, (rng.choice(retail),)))
        elif rng.random() < REFUND_SHARE:
            back = opening_hours(at + int(DAY * rng.uniform(1, 5)), at)
            steps.append(Step(back, REFUND, back, visit, refund=rng.choice((300, 500, 1000))))
        if rng.random() < SURVEY_SHARE:
            answered = at + int(3600 * rng.uniform(3, 48))
            steps.append(Step(answered, SURVEY, answered, visit))
        # Car owners come back fairly regularly: a gamma around their usual interval.
        at = opening_hours(at + int(DAY * max(3.0, rng.gammavariate(3, gap / 3))), at)
    steps.sort(key=lambda s: s.posted)
    return location, [s for s in steps if s.posted <= params.now]


def history_rng(subject: Subject, seed: int) -> random.Random:
    # Not for secrets: the same seed has to give the same history.
    return random.Random(f"history:{subject.ordinal}:{seed}")  # noqa: S311


# --- The programme as the services see it -------------------------------------------------------


@dataclass(frozen=True)
class Programme:
    """What the services read from the database to post a history, read once."""

    currency: str
    digits: int
    point_value: int  # minor units per point
    pending_days: int
    expiry_policy: str
    expiry_days: int | None
    timezone: str
    tier_metric: str
    tier_window_days: int | None
    ladder: tuple[TierInfo, ...]
    purchase_rules: tuple[engine.Rule, ...]
    bonus_rules: tuple[engine.Rule, ...]

    @classmethod
    def read(cls, session: Session) -> Programme:
        program = program_service.get(session)
        every = rules.active_rules(session)
        if any(r.conditions.segments for r in every):
            raise ValueError("the demo history cannot follow earning rules restricted to segments")
        return cls(
            currency=program.currency,
            digits=minor_digits(program.currency),
            point_value=program.point_value_minor,
            pending_days=program.pending_days,
            expiry_policy=program.expiry_policy,
            expiry_days=program.expiry_days,
            timezone=program.timezone,
            tier_metric=program.tier_metric,
            tier_window_days=program.tier_window_days,
            ladder=tuple(tiers.ladder(session)),
            purchase_rules=tuple(r for r in every if r.kind in PURCHASE_RULE_KINDS),
            bonus_rules=tuple(r for r in every if r.kind in engine.BONUS_KINDS),
        )


# --- Text for COPY ------------------------------------------------------------------------------

NULL = "\\N"
_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_HMS = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]


def copy_text(value: str) -> str:
    """A string as COPY's text format needs it: backslash, tab and line breaks escaped."""
    for char, escaped in _ESCAPES:  # a scan per character is quicker than str.translate's per-character lookups
        if char in value:
            value = value.replace(char, escaped)
    return value


class _Dates(dict[int, str]):
    """Days since the epoch as ISO dates, made once each."""

    def __missing__(self, days: int) -> str:
        text = self[days] = date.fromordinal(_EPOCH_ORDINAL + days).isoformat()
        return text


_DATES = _Dates()


def time_text(t: int) -> str:
    """Epoch seconds as a timestamptz literal in UTC."""
    days, seconds = divmod(t, DAY)
    return f"{_DATES[days]} {_HMS[seconds]}+00"


def time_json(t: int) -> str:
    """Epoch seconds as pydantic writes an aware UTC datetime to JSON."""
    days, seconds = divmod(t, DAY)
    return f"{_DATES[days]}T{_HMS[seconds]}Z"


def _opt(value: str | None) -> str:
    return NULL if value is None else value


def _opt_time(t: int | None) -> str:
    return NULL if t is None else time_text(t)


def _json(value: str | None) -> str:
    return "null" if value is None else json.dumps(value, ensure_ascii=False)


# The tables a history writes, in the order their foreign keys need, with the columns in COPY order.
COLUMNS: dict[str, tuple[str, ...]] = {
    "transactions": (
        "id",
        "external_id",
        "member_id",
        "occurred_at",
        "location",
        "channel",
        "currency",
        "total_minor",
        "discount_minor",
        "points_redeemed",
        "points_value_minor",
        "amount_due_minor",
        "points_earned",
        "returned_amount_minor",
        "returned_net_minor",
        "points_reversed",
        "points_restored",
        "answer",
        "actor_kind",
        "actor_id",
        "created_at",
    ),
    "transaction_lines": (
        "id",
        "transaction_id",
        "position",
        "sku",
        "name",
        "category",
        "quantity",
        "unit_price_minor",
        "total_minor",
        "net_minor",
        "returned_quantity",
    ),
    "transaction_returns": (
        "id",
        "transaction_id",
        "external_id",
        "amount_minor",
        "items",
        "points_reversed",
        "points_restored",
        "created_at",
    ),
    "ledger_entries": (
        "id",
        "member_id",
        "kind",
        "points",
        "balance_after",
        "created_at",
        "transaction_id",
        "rule_id",
        "reason",
        "expires_at",
        "actor_kind",
        "actor_id",
    ),
    "point_lots": (
        "id",
        "member_id",
        "entry_id",
        "transaction_id",
        "points",
        "remaining",
        "pending",
        "available_at",
        "expires_at",
        "created_at",
    ),
    "lot_allocations": ("id", "entry_id", "lot_id", "points"),
    "tier_changes": ("id", "member_id", "from_code", "to_code", "reason", "metric_value", "changed_at"),
}
TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Transaction.__table__,
        TransactionLine.__table__,
        TransactionReturn.__table__,
        LedgerEntry.__table__,
        PointLot.__table__,
        LotAllocation.__table__,
        TierChange.__table__,
    )
    if isinstance(t, Table)
}


# --- One member's ledger, as the services keep it ------------------------------------------------


class _Ids:
    """A member's UUIDv7s: their millisecond, version 7, a 24-bit counter split around the variant
    bits (so ids sort in the order they were made), then 50 bits of the member's salt."""

    __slots__ = ("n", "prefix", "salt_high", "salt_low")

    def __init__(self, ms: int, salt: int) -> None:
        head = f"{ms:012x}"
        self.prefix = f"{head[:8]}-{head[8:]}-7"
        self.salt_high = salt >> 48  # 2 bits, beside the counter's low 12
        self.salt_low = f"{salt & 0xFFFFFFFFFFFF:012x}"
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return self.make(self.n)

    def make(self, n: int) -> str:
        return f"{self.prefix}{n >> 12:03x}-{0x8000 | (n & 0xFFF) << 2 | self.salt_high:04x}-{self.salt_low}"


_MASK50 = (1 << 50) - 1


def member_uuid(params: Params, index: int) -> uuid.UUID:
    """Member `index`'s id: counter 0 of their millisecond."""
    return uuid.UUID(_Ids(params.id_base_ms + index, _salt(params.seed, index)).make(0))


def _salt(seed: int, index: int) -> int:
    """50 bits that differ from member to member, the same for a seed (splitmix64's finaliser)."""
    x = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) & _MASK50


class _Lot:
    __slots__ = (
        "available_at",
        "created_at",
        "entry",
        "expires_at",
        "id",
        "pending",
        "points",
        "remaining",
        "seq",
        "txn",
    )

    def __init__(
        self,
        id: str,
        seq: int,
        entry: str,
        txn: str | None,
        points: int,
        pending: bool,
        available_at: int,
        expires_at: int | None,
        created_at: int,
    ) -> None:
        self.id = id
        self.seq = seq  # creation order, which is id order
        self.entry = entry
        self.txn = txn
        self.points = points
        self.remaining = points
        self.pending = pending
        self.available_at = available_at
        self.expires_at = expires_at
        self.created_at = created_at

    def spend_key(self) -> tuple[bool, int, int]:
        """ledger.service.SPEND_ORDER: soonest expiry first, never-expiring last, then oldest."""
        return (self.expires_at is None, self.expires_at or 0, self.seq)


class _Purchase:
    __slots__ = (
        "amount_due",
        "at",
        "external_id",
        "id",
        "lines",
        "points_earned",
        "points_redeemed",
        "points_restored",
        "points_reversed",
        "redeemed_from",
        "restored_to",
        "returned_amount",
        "returned_net",
        "row",
        "total",
    )

    def __init__(self, id: str, external_id: str, at: int, total: int, amount_due: int) -> None:
        self.id = id
        self.external_id = external_id
        self.at = at
        self.total = total
        self.amount_due = amount_due
        self.points_earned = 0
        self.points_redeemed = 0
        self.returned_amount = 0
        self.returned_net = 0
        self.points_reversed = 0
        self.points_restored = 0
        # [id, sku, quantity, unit price, total, net, returned quantity], all minor units
        self.lines: list[list[Any]] = []
        self.redeemed_from: list[tuple[_Lot, int]] = []  # the redeem entry's allocations
        self.restored_to: dict[str, int] = {}  # lot id: points given back so far
        self.row: list[str] = []  # the transaction row but its changing columns


@dataclass
class Tally:
    """What the histories did."""

    members: int = 0
    purchases: int = 0
    returns: int = 0
    surveys: int = 0
    points_earned: int = 0  # by purchases
    points_bonus: int = 0  # welcome and survey bonuses
    points_redeemed: int = 0
    points_reversed: int = 0  # taken back by returns
    points_restored: int = 0  # given back by returns of purchases paid with points
    points_released: int = 0  # made spendable by the nightly release-pending runs
    points_expired: int = 0  # by the nightly expire-points runs
    entries: int = 0
    tier_changes: int = 0

    def add(self, other: Tally) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class Chunk:
    """The history of a run of members, ready to write."""

    tables: dict[str, str] = field(default_factory=dict)  # table: its rows as COPY text, a line each
    # (member id, available, pending, lifetime_earned, redeemed, expired, updated_at)
    accounts: list[tuple[str, int, int, int, int, int, int]] = field(default_factory=list)
    tiers: list[str] = field(default_factory=list)  # each member's tier at the end, in order
    tally: Tally = field(default_factory=Tally)


class Earner:
    """`engine.earn`, compiled for a set of rules: the same steps, contributions and roundings in
    integer arithmetic, without building a Basket per purchase. A million members make six
    million purchases, and the engine's generality (Decimal quantities, rules matched line by line,
    dataclasses) is a third of what simulating them costs.

    `tests/test_demo.py` holds it to `engine.earn` on random baskets and rule sets; the histories'
    replay through the services checks it again."""

    def __init__(self, rules: Sequence[engine.Rule], zone: ZoneInfo) -> None:
        self.rules = tuple(rules)
        self.zone = zone
        unconditional = engine.Conditions()
        # Per rule: None (no conditions), an int (a minimum total only), or the conditions.
        self.checks: list[engine.Conditions | int | None] = []
        for r in self.rules:
            c = r.conditions
            if c == unconditional:
                self.checks.append(None)
            elif c == engine.Conditions(min_total=c.min_total) and c.min_total is not None:
                self.checks.append(c.min_total)
            else:
                self.checks.append(c)
        self.amount = [r.kind in ("spend", "category") or (r.kind == "sku" and r.per_amount is not None) for r in rules]
        self.multiplier = [r.kind == "multiplier" and r.factor is not None for r in rules]
        self.restricted = [bool(r.skus or r.categories) for r in rules]
        # factor - 1 for restricted multipliers, factor for the others: exact (numerator, denominator).
        self.fractions = [
            _ratio(Fraction(r.factor) - (1 if restricted else 0)) if r.factor is not None else (0, 1)
            for r, restricted in zip(rules, self.restricted, strict=True)
        ]
        self.tiers: dict[Decimal, tuple[int, int]] = {}
        self.matches: dict[tuple[str, str | None], tuple[bool, ...]] = {}

    def _match(self, sku: str, category: str | None) -> tuple[bool, ...]:
        key = (sku, category)
        found = self.matches.get(key)
        if found is None:
            found = self.matches[key] = tuple(
                (not r.skus or sku in r.skus) and (not r.categories or category in r.categories) for r in self.rules
            )
        return found

    def earn(
        self,
        lines: Sequence[tuple[str, str | None, int, int]],  # (sku, category, quantity, net)
        total: int,
        amount_due: int,
        member: engine.MemberContext,
        at: int,
        channel: str,
        location: str | None,
    ) -> tuple[int, list[tuple[uuid.UUID | None, str, int]]]:
        """(points, [(rule id, rule name, points)]) as engine.earn gives them."""
        rules = self.rules
        when: engine.Occasion | None = None
        live = []
        for i, check in enumerate(self.checks):
            if check is None:
                live.append(i)
            elif isinstance(check, int):
                if total >= check:
                    live.append(i)
            else:
                if when is None:
                    when = engine.Occasion(datetime.fromtimestamp(at, UTC), channel, location, total)
                if engine.conditions_hold(check, when, member, self.zone):
                    live.append(i)
        matched = [(self._match(sku, category), quantity, net) for sku, category, quantity, net in lines]
        amount_rules = [i for i in live if self.amount[i]]
        out: list[tuple[int | None, int]] = []  # (rule index, or None for the tier; points)

        # Step 4: amount-based rules over the whole basket (spend over amount_due).
        running = 0
        for i in amount_rules:
            r = rules[i]
            assert r.per_amount
            base = amount_due if r.kind == "spend" else sum(net for m, _, net in matched if m[i])
            points = _cap(r, (max(base, 0) // r.per_amount) * r.points)
            running += points
            out.append((i, points))
        # Step 5a: restricted multipliers add floor(P × (factor − 1)) of what step 4 gives their lines.
        multipliers = [i for i in live if self.multiplier[i]]
        for i in multipliers:
            if not self.restricted[i]:
                continue
            subset = [line for line in matched if line[0][i]]
            subset_net = sum(net for _, _, net in subset)
            p = 0
            for j in amount_rules:
                r = rules[j]
                assert r.per_amount
                base = subset_net if r.kind == "spend" else sum(net for m, _, net in subset if m[j])
                p += _cap(r, (max(base, 0) // r.per_amount) * r.points)
            numerator, denominator = self.fractions[i]
            added = max(_cap(rules[i], p * numerator // denominator), -running)
            running += added
            out.append((i, added))
        # Step 5b: unrestricted multipliers and the tier multiply the running sum once.
        factors: list[tuple[int | None, tuple[int, int]]] = [
            (i, self.fractions[i]) for i in multipliers if not self.restricted[i] and rules[i].factor
        ]
        if member.tier_multiplier != 1:
            ratio = self.tiers.get(member.tier_multiplier)
            if ratio is None:
                ratio = self.tiers[member.tier_multiplier] = _ratio(Fraction(member.tier_multiplier))
            factors.append((None, ratio))
        base, numerator, denominator, previous = running, 1, 1, running
        for k, (n, d) in factors:
            numerator, denominator = numerator * n, denominator * d
            cumulative = base * numerator // denominator
            added = cumulative - previous
            cap = rules[k].max_points if k is not None else None
            if cap is not None and added > cap:
                added = cap
                base, numerator, denominator, cumulative = previous + added, 1, 1, previous + added
            previous = cumulative
            running += added
            out.append((k, added))
        # Step 6: fixed bonuses, never multiplied.
        for i in live:
            r = rules[i]
            if r.kind == "sku" and r.per_amount is None:
                points = _cap(r, sum(quantity for m, quantity, _ in matched if m[i]) * r.points)
            elif r.kind == "visit":
                points = _cap(r, r.points)
            else:
                continue
            running += points
            out.append((i, points))
        contributing = [
            (rules[i].id, rules[i].name, points)
            if i is not None
            else (None, f"Tier {member.tier_name} ×{member.tier_multiplier}", points)
            for i, points in out
            if points != 0
        ]
        return sum(points for _, _, points in contributing), contributing


def _ratio(value: Fraction) -> tuple[int, int]:
    return value.numerator, value.denominator


def _cap(rule: engine.Rule, points: int) -> int:
    return min(points, rule.max_points) if rule.max_points is not None else points


class _Context:
    """Everything the members of one chunk share, built once per process."""

    def __init__(self, programme: Programme, params: Params) -> None:
        self.programme = programme
        self.params = params
        self.zone = ZoneInfo(programme.timezone)
        self.calendar = Calendar.of(programme.timezone, params)
        self.contexts = {
            t.code: engine.MemberContext(tier_code=t.code, tier_name=t.name, tier_multiplier=t.multiplier)
            for t in programme.ladder
        }
        self.earner = Earner(programme.purchase_rules, self.zone)
        self.positions = {t.code: t.position for t in programme.ladder}
        scale = 10**programme.digits if programme.tier_metric == "spend" else 1
        self.thresholds = [(t.threshold * scale, t) for t in programme.ladder]
        self.tier_json = {t.code: f'{{"code":{_json(t.code)},"name":{_json(t.name)}}}' for t in programme.ladder}
        self.zero = self.money(0)
        self.texts: dict[str | None, str] = {}
        self.window = programme.tier_window_days * DAY if programme.tier_window_days else None
        self.base_tier = programme.ladder[0].code
        self.fragments: dict[tuple[uuid.UUID | None, str], str] = {}
        self.actor_kind = copy_text(params.actor_kind)
        self.actor_id = _opt(None if params.actor_id is None else copy_text(params.actor_id))
        self.stub = Program(
            expiry_policy=programme.expiry_policy, expiry_days=programme.expiry_days, timezone=programme.timezone
        )
        self.names = {sku: copy_text(p.name) for sku, p in CATALOGUE.items()}

    def expires_at(self, at: int) -> int | None:
        """ledger.policy.expires_at, in epoch seconds."""
        p = self.programme
        if p.expiry_policy == "after_days" and p.expiry_days:
            return at + p.expiry_days * DAY
        expiry = policy.expires_at(self.stub, datetime.fromtimestamp(at, UTC))
        return None if expiry is None else int(expiry.timestamp())

    def json(self, value: str | None) -> str:
        """A JSON string (or null), remembered: locations repeat."""
        text = self.texts.get(value)
        if text is None:
            text = self.texts[value] = _json(value)
        return text

    def money(self, minor: int) -> str:
        """kit.money.from_minor as text."""
        digits = self.programme.digits
        if digits == 2:
            whole, part = divmod(minor, 100)
            return f"{whole}.{part:02d}"
        if digits == 0:
            return str(minor)
        whole, part = divmod(minor, 10**digits)
        return f"{whole}.{part:0{digits}d}"

    def breakdown(self, contributions: Iterable[tuple[uuid.UUID | None, str, int]]) -> str:
        out = []
        for rule_id, rule_name, points in contributions:
            key = (rule_id, rule_name)
            fragment = self.fragments.get(key)
            if fragment is None:
                id_json = "null" if rule_id is None else f'"{rule_id}"'
                fragment = self.fragments[key] = f'{{"rule_id":{id_json},"rule_name":{_json(rule_name)},"points":'
            out.append(f"{fragment}{points}}}")
        return "[" + ",".join(out) + "]"


class _Member:
    """One member's account, lots and purchases, moved as the services and jobs move them."""

    def __init__(self, ctx: _Context, subject: Subject, chunk: Chunk, rows: dict[str, list[str]]) -> None:
        self.ctx = ctx
        self.subject = subject
        self.id = subject.id
        self.chunk = chunk
        self.tables = rows
        self.tally = chunk.tally
        self.ids = _Ids(ctx.params.id_base_ms + subject.ordinal, _salt(ctx.params.seed, subject.ordinal))
        self.seq = 0
        self.available = self.pending = self.lifetime = self.redeemed = self.expired = 0
        self.updated_at = subject.enrolled_at
        self.lots: list[_Lot] = []
        self.purchases: dict[int, _Purchase] = {}
        self.tier = ctx.base_tier
        self.cursor = subject.enrolled_at  # the nightly runs up to here are done
        self.earned: list[tuple[int, int]] = []  # (created_at, points) of earn and reverse entries

    # The ledger (ledger/service.py) ---------------------------------------------------------

    def _entry(
        self,
        kind: str,
        points: int,
        now: int,
        *,
        txn: str | None = None,
        rule: uuid.UUID | None = None,
        reason: str | None = None,
        expires: int | None = None,
    ) -> str:
        entry = self.ids()
        self.updated_at = now
        self.tables["ledger_entries"].append(
            f"{entry}\t{self.id}\t{kind}\t{points}\t{self.available + self.pending}\t{time_text(now)}\t"
            f"{_opt(txn)}\t{_opt(None if rule is None else str(rule))}\t{_opt(reason)}\t{_opt_time(expires)}\t"
            f"{self.ctx.actor_kind}\t{self.ctx.actor_id}"
        )
        self.tally.entries += 1
        if kind in ("earn", "reverse"):
            self.earned.append((now, points))
        return entry

    def _allocate(self, entry: str, lot: _Lot, points: int) -> None:
        self.tables["lot_allocations"].append(f"{self.ids()}\t{entry}\t{lot.id}\t{points}")

    def credit(
        self,
        kind: str,
        points: int,
        now: int,
        *,
        available_at: int,
        expires_at: int | None,
        txn: str | None = None,
        rule: uuid.UUID | None = None,
        reason: str | None = None,
    ) -> None:
        pending = available_at > now
        available_before = self.available
        if pending:
            self.pending += points
        else:
            self.available += points
        if kind in ("earn", "bonus"):
            self.lifetime += points
        entry = self._entry(kind, points, now, txn=txn, rule=rule, reason=reason, expires=expires_at)
        self.seq += 1
        lot = _Lot(self.ids(), self.seq, entry, txn, points, pending, available_at, expires_at, now)
        self.lots.append(lot)
        if not pending and available_before < 0:
            _absorb_debt([lot], available_before)

    def _open_lots(self) -> list[_Lot]:
        return sorted((lot for lot in self.lots if lot.remaining > 0 and not lot.pending), key=_Lot.spend_key)

    def _take(self, entry: str, lots: Sequence[_Lot], points: int) -> tuple[int, list[tuple[_Lot, int]]]:
        taken = 0
        parts = []
        for lot in lots:
            if taken == points:
                break
            part = min(lot.remaining, points - taken)
            if part <= 0:
                continue
            lot.remaining -= part
            taken += part
            self._allocate(entry, lot, part)
            parts.append((lot, part))
        return taken, parts

    def release_matured(self, now: int) -> int:
        if self.pending == 0:
            return 0
        lots = sorted((lot for lot in self.lots if lot.pending and lot.available_at <= now), key=_Lot.spend_key)
        released = 0
        for lot in lots:
            lot.pending = False
            released += lot.remaining
        available_before = self.available
        self.pending -= released
        self.available += released
        if available_before < 0:
            _absorb_debt(lots, available_before)
        return released

    def reverse_earning(self, purchase: _Purchase, points: int, now: int, reason: str) -> None:
        own = sorted(
            (lot for lot in self.lots if lot.txn == purchase.id and lot.remaining > 0),
            key=lambda lot: (not lot.pending, lot.seq),
        )
        from_pending = 0
        left = points
        for lot in own:
            part = min(lot.remaining, left)
            if lot.pending:
                from_pending += part
            left -= part
        self.pending -= from_pending
        self.available -= points - from_pending
        self.lifetime -= points
        entry = self._entry("reverse", -points, now, txn=purchase.id, reason=reason)
        taken, _ = self._take(entry, own, points)
        if taken < points:
            self._take(entry, self._open_lots(), points - taken)

    def restore(self, purchase: _Purchase, points: int, now: int, reason: str) -> None:
        available_before = self.available
        self.available += points
        self.redeemed -= points
        entry = self._entry("restore", points, now, txn=purchase.id, reason=reason)
        allocations = sorted(
            purchase.redeemed_from,
            key=lambda a: (a[0].expires_at is not None, -(a[0].expires_at or 0), -a[0].seq),
        )
        before = dict(purchase.restored_to)
        left = points
        touched = []
        for lot, allocated in allocations:
            part = min(allocated - before.get(lot.id, 0), left)
            if part <= 0:
                continue
            lot.remaining += part
            self._allocate(entry, lot, -part)
            purchase.restored_to[lot.id] = purchase.restored_to.get(lot.id, 0) + part
            touched.append(lot)
            left -= part
            if left == 0:
                break
        if available_before < 0:
            _absorb_debt(sorted(touched, key=_Lot.spend_key), available_before)

    # The nightly jobs (jobs/points.py) -------------------------------------------------------

    def advance(self, until: int) -> None:
        """Run the nightly jobs of every local midnight after the last step, up to `until`."""
        calendar = self.ctx.calendar
        after = self.cursor + 1
        due = []
        for lot in self.lots:
            if lot.pending:
                due.append(lot.available_at)
            if lot.remaining > 0 and lot.expires_at is not None:
                due.append(lot.expires_at)
        runs = set()
        # Usually nothing matures or expires before the next step.
        if due and max(min(due), after) <= until:
            for t in due:
                midnight = calendar.next_midnight(max(t, after))
                if midnight is not None and midnight <= until:
                    runs.add(midnight)
        for midnight in sorted(runs):
            self._release_job(midnight)
            self._expire_job(midnight)
        self.cursor = max(self.cursor, until)

    def _release_job(self, now: int) -> None:
        matured = [lot for lot in self.lots if lot.pending and lot.available_at <= now]
        if not matured:
            return
        if self.available < 0:  # in debt: the job releases this member through the ledger service
            self.tally.points_released += self.release_matured(now)
            return
        total = sum(lot.remaining for lot in matured)
        for lot in matured:
            lot.pending = False
        self.available += total
        self.pending -= total
        self.updated_at = now
        self.tally.points_released += total

    def _expire_job(self, now: int) -> None:
        due = [lot for lot in self.lots if lot.remaining > 0 and lot.expires_at is not None and lot.expires_at <= now]
        if not due:
            return
        amount = sum(lot.remaining for lot in due)
        from_pending = sum(lot.remaining for lot in due if lot.pending)
        entry = self.ids()
        self.tables["ledger_entries"].append(
            f"{entry}\t{self.id}\texpire\t{-amount}\t{self.available + self.pending - amount}\t{time_text(now)}\t"
            f"{NULL}\t{NULL}\tpoints expired\t{NULL}\tsystem\t{NULL}"
        )
        self.tally.entries += 1
        self.pending -= from_pending
        self.available -= amount - from_pending
        self.expired += amount
        self.updated_at = now
        for lot in due:
            lot.remaining = 0
        self.tally.points_expired += amount

    # What the member does (rules/bonuses.py, transactions/service.py, events/service.py) ------

    def bonus(self, kind: str, at: int, now: int, *, event_type: str | None = None, where: str | None = None) -> None:
        ctx = self.ctx
        when = engine.Occasion(
            at=datetime.fromtimestamp(at, UTC),
            channel=self.subject.channel if kind == "welcome" else None,
            location=where,
        )
        result = engine.bonus(
            kind, ctx.programme.bonus_rules, ctx.contexts[self.tier], when, ctx.zone, event_type=event_type
        )
        for c in result.breakdown:
            self.credit(
                "bonus",
                c.points,
                now,
                available_at=now,
                expires_at=ctx.expires_at(at),
                rule=c.rule_id,
                reason=copy_text(c.rule_name),
            )
            self.tally.points_bonus += c.points

    def purchase(self, step: Step, location: str, rng: random.Random) -> None:
        ctx, programme = self.ctx, self.ctx.programme
        now, at = step.posted, step.at
        self.release_matured(now)
        line_totals = [quantity * price * 100 for _, quantity, price in step.lines]
        total = sum(line_totals)
        redeem = 0
        if self.available >= REDEEM_FROM and rng.random() < REDEEM_SHARE:
            redeem = min(self.available, total // 2 // programme.point_value) // 50 * 50
        points_value = redeem * programme.point_value
        amount_due = total - points_value
        shares = engine.spread(points_value, line_totals)
        nets = [t - s for t, s in zip(line_totals, shares, strict=True)]
        earned, breakdown = ctx.earner.earn(
            [
                (sku, CATALOGUE[sku].category, quantity, net)
                for (sku, quantity, _), net in zip(step.lines, nets, strict=True)
            ],
            total,
            amount_due,
            ctx.contexts[self.tier],
            at,
            "pos",
            location,
        )

        txn = self.ids()
        purchase = _Purchase(txn, f"demo-{self.subject.number}-{step.visit:03d}", at, total, amount_due)
        self.purchases[step.visit] = purchase
        if redeem:
            self.available -= redeem
            self.redeemed += redeem
            entry = self._entry("redeem", -redeem, now, txn=txn)
            _, purchase.redeemed_from = self._take(entry, self._open_lots(), redeem)
        if earned > 0:
            self.credit(
                "earn",
                earned,
                now,
                available_at=at + programme.pending_days * DAY,
                expires_at=ctx.expires_at(at),
                txn=txn,
            )
        self._upgrade(purchase, now)
        purchase.points_earned = earned
        purchase.points_redeemed = redeem
        self.tally.purchases += 1
        self.tally.points_earned += earned
        self.tally.points_redeemed += redeem

        money = ctx.money
        # TransactionOut.model_dump(mode="json"), written out: pydantic would take longer than the rest.
        answer = (
            f'{{"id":"{txn}","external_id":"{purchase.external_id}","member_id":"{self.id}",'
            f'"occurred_at":"{time_json(at)}","location":{ctx.json(location)},"channel":"pos",'
            f'"total":"{money(total)}","discount":"{ctx.zero}","points_redeemed":{redeem},'
            f'"points_value":"{money(points_value)}","amount_due":"{money(amount_due)}",'
            f'"points_earned":{earned},"breakdown":{ctx.breakdown(breakdown)},'
            f'"balance":{{"available":{self.available},"pending":{self.pending}}},'
            f'"tier":{ctx.tier_json[self.tier]},"coupons":[]}}'
        )
        purchase.row = [
            txn,
            purchase.external_id,
            self.id,
            time_text(at),
            _opt(location),
            "pos",
            programme.currency,
            str(total),
            "0",
            str(redeem),
            str(points_value),
            str(amount_due),
            str(earned),
            copy_text(answer),
            ctx.actor_kind,
            ctx.actor_id,
            time_text(now),
        ]
        for (sku, quantity, price), line_total, net in zip(step.lines, line_totals, nets, strict=True):
            purchase.lines.append([self.ids(), sku, quantity, price * 100, line_total, net, 0])

    def _metric(self, now: int, purchase: _Purchase) -> int:
        """tiers.service.metric_values for this member as `after_purchase` sees it."""
        ctx = self.ctx
        since = None if ctx.window is None else now - ctx.window
        metric = ctx.programme.tier_metric
        # The purchase being posted is not a transaction row yet, but its points are in the ledger.
        earlier = [p for p in self.purchases.values() if p is not purchase]
        if metric == "points":
            value = sum(points for created, points in self.earned if since is None or created >= since)
        elif metric == "visits":
            value = sum(1 for p in earlier if since is None or p.at >= since)
        else:
            value = sum(p.amount_due - p.returned_net for p in earlier if since is None or p.at >= since)
        value = max(value, 0)
        if since is None or purchase.at >= since:
            value += purchase.amount_due if metric == "spend" else 1 if metric == "visits" else 0
        return value

    def _upgrade(self, purchase: _Purchase, now: int) -> None:
        ctx = self.ctx
        if len(ctx.thresholds) < 2:
            return
        value = self._metric(now, purchase)
        reached = [t for threshold, t in ctx.thresholds if threshold <= value]
        target = reached[-1] if reached else ctx.programme.ladder[0]
        if target.position > ctx.positions.get(self.tier, -1):
            self.tables["tier_changes"].append(
                f"{self.ids()}\t{self.id}\t{self.tier}\t{target.code}\tpurchase\t{value}\t{time_text(now)}"
            )
            self.tier = target.code
            self.tally.tier_changes += 1

    def give_back(self, step: Step) -> None:
        """A return of one line's goods, or a refund of part of the bill (process_return)."""
        purchase = self.purchases[step.visit]
        now = step.posted
        if step.kind == RETURN:
            sku, quantity, _ = step.lines[0]
            external_id = f"{purchase.external_id}-return"
            left = quantity
            for line in purchase.lines:
                if line[1] != sku:
                    continue
                take = min(line[2] - line[6], left)
                if take > 0:
                    line[6] += take
                    left -= take
            amount = None
            items = f'[{{"sku":{_json(sku)},"quantity":"{quantity}"}}]'
        else:
            amount = min(step.refund * 10**self.ctx.programme.digits, purchase.amount_due)
            if amount <= 0:  # paid wholly with points: nothing to refund in money
                return
            external_id = f"{purchase.external_id}-refund"
            purchase.returned_amount += amount
            items = "[]"
        net = purchase.amount_due
        if net > 0:
            by_items = sum(
                (Fraction(line[5]) * Fraction(line[6]) / Fraction(line[2]) for line in purchase.lines), Fraction(0)
            )
            after = (by_items + purchase.returned_amount) / net
        else:
            gross = sum(line[4] for line in purchase.lines)
            by_gross = sum(
                (Fraction(line[4]) * Fraction(line[6]) / Fraction(line[2]) for line in purchase.lines), Fraction(0)
            )
            after = by_gross / gross if gross else Fraction(0)
        purchase.returned_net = min(_half_up(net * after), net) if net > 0 else 0
        reversed_total = min(_half_up(purchase.points_earned * after), purchase.points_earned)
        restored_total = min(_half_up(purchase.points_redeemed * after), purchase.points_redeemed)
        to_reverse = max(reversed_total - purchase.points_reversed, 0)
        to_restore = max(restored_total - purchase.points_restored, 0)
        purchase.points_reversed += to_reverse
        purchase.points_restored += to_restore
        self.tables["transaction_returns"].append(
            f"{self.ids()}\t{purchase.id}\t{external_id}\t{_opt(None if amount is None else str(amount))}\t"
            f"{copy_text(items)}\t"
            f"{to_reverse}\t{to_restore}\t{time_text(now)}"
        )
        reason = f"return {external_id}"
        if to_reverse:
            self.reverse_earning(purchase, to_reverse, now, reason)
        if to_restore:
            self.restore(purchase, to_restore, now, reason)
        self.tally.returns += 1
        self.tally.points_reversed += to_reverse
        self.tally.points_restored += to_restore

    def survey(self, step: Step) -> None:
        self.release_matured(step.posted)
        self.bonus("event", step.at, step.posted, event_type="survey_answered")
        self.tally.surveys += 1

    # The rows ----------------------------------------------------------------------------------

    def finish(self) -> None:
        t = self.tables
        for p in self.purchases.values():
            row = p.row
            t["transactions"].append(
                "\t".join(
                    (
                        *row[:13],
                        str(p.returned_amount),
                        str(p.returned_net),
                        str(p.points_reversed),
                        str(p.points_restored),
                        *row[13:],
                    )
                )
            )
            names = self.ctx.names
            for position, (line_id, sku, quantity, unit, line_total, net, returned) in enumerate(p.lines):
                t["transaction_lines"].append(
                    f"{line_id}\t{p.id}\t{position}\t{sku}\t{names[sku]}\t{CATALOGUE[sku].category}\t{quantity}\t"
                    f"{unit}\t{line_total}\t{net}\t{returned}"
                )
        for lot in self.lots:
            t["point_lots"].append(
                f"{lot.id}\t{self.id}\t{lot.entry}\t{_opt(lot.txn)}\t{lot.points}\t{lot.remaining}\t"
                f"{'t' if lot.pending else 'f'}\t{time_text(lot.available_at)}\t{_opt_time(lot.expires_at)}\t"
                f"{time_text(lot.created_at)}"
            )
        self.chunk.accounts.append(
            (self.id, self.available, self.pending, self.lifetime, self.redeemed, self.expired, self.updated_at)
        )
        self.chunk.tiers.append(self.tier)
        self.tally.members += 1


def _absorb_debt(lots: Sequence[_Lot], available_before: int) -> None:
    debt = -available_before
    for lot in lots:
        if debt <= 0:
            return
        part = min(lot.remaining, debt)
        lot.remaining -= part
        debt -= part


def _half_up(value: Fraction) -> int:
    whole, rest = divmod(value.numerator, value.denominator)
    return whole + (1 if 2 * rest >= value.denominator else 0)


# --- Chunks ---------------------------------------------------------------------------------------

_contexts: dict[tuple[Programme, Params], _Context] = {}


def simulate(programme: Programme, params: Params, subjects: Sequence[Subject]) -> Chunk:
    """The history of `subjects` up to `params.now`: every row, and each account at the end.

    A pure function of its arguments (worker processes run it); the nightly jobs are run up to
    the last midnight before `now`, so what is left for the jobs to do as of `now` is today's."""
    key = (programme, params)
    ctx = _contexts.get(key)
    if ctx is None:
        _contexts.clear()
        ctx = _contexts[key] = _Context(programme, params)
    chunk = Chunk()
    rows: dict[str, list[str]] = {name: [] for name in COLUMNS}
    for subject in subjects:
        rng = history_rng(subject, params.seed)
        location, steps = steps_of(subject, params, ctx.calendar, rng)
        member = _Member(ctx, subject, chunk, rows)
        for step in steps:
            member.advance(step.posted)
            if step.kind == PURCHASE:
                member.purchase(step, location, rng)
            elif step.kind == WELCOME:
                member.bonus("welcome", step.at, step.posted, where=subject.location)
            elif step.kind == SURVEY:
                member.survey(step)
            else:
                member.give_back(step)
        member.advance(params.now)
        member.finish()
    # One string a table: handed from a worker process to the writer at the cost of a copy.
    chunk.tables = {name: "\n".join(lines) + "\n" for name, lines in rows.items() if lines}
    return chunk


# --- Writing --------------------------------------------------------------------------------------


def may_skip_checks(session: Session) -> bool:
    """Whether `skip_checks` may be used: on PostgreSQL, as a superuser."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    return bool(session.scalar(text("SELECT current_setting('is_superuser')")) == "on")


def skip_checks(session: Session) -> None:
    """Skip the foreign-key triggers for the rest of this transaction, as pg_restore's
    --disable-triggers does: a third of the time a chunk takes to load, for rows that are
    consistent by construction (the tests load them with the checks on, on both databases)."""
    session.execute(text("SET LOCAL session_replication_role = replica"))


def write(session: Session, chunk: Chunk) -> None:
    """Insert a chunk's rows and set its members' balances (their accounts exist, at zero)."""
    if session.get_bind().dialect.name == "postgresql":
        _write_postgres(session, chunk)
    else:
        _write_generic(session, chunk)


def _write_postgres(session: Session, chunk: Chunk) -> None:
    from psycopg import sql

    raw: Any = session.connection().connection.driver_connection
    with raw.cursor() as cursor:
        for name, columns in COLUMNS.items():
            rows = chunk.tables.get(name)
            if not rows:
                continue
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, columns))
            )
            with cursor.copy(statement) as copy:
                copy.write(rows)
        if chunk.accounts:
            ids, available, pending, lifetime, redeemed, expired, updated = zip(*chunk.accounts, strict=True)
            cursor.execute(
                "UPDATE point_accounts AS a SET available = v.available, pending = v.pending,"
                " lifetime_earned = v.lifetime_earned, redeemed = v.redeemed, expired = v.expired,"
                " updated_at = v.updated_at"
                " FROM unnest(%s::uuid[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[],"
                " %s::timestamptz[]) AS v(member_id, available, pending, lifetime_earned, redeemed, expired,"
                " updated_at) WHERE a.member_id = v.member_id",
                (
                    list(ids),
                    list(available),
                    list(pending),
                    list(lifetime),
                    list(redeemed),
                    list(expired),
                    [datetime.fromtimestamp(t, UTC) for t in updated],
                ),
            )


_UNESCAPE = re.compile(r"\\(.)")


def _reader(column: Any) -> Callable[[str], Any]:
    kind = column.type
    if isinstance(kind, Uuid):
        return uuid.UUID
    if isinstance(kind, UTCDateTime):
        return datetime.fromisoformat
    if isinstance(kind, Boolean):
        return lambda text: text == "t"
    if isinstance(kind, Integer):  # BigInteger too
        return int
    if isinstance(kind, JSON):
        return lambda text: json.loads(_unescape(text))
    if isinstance(kind, Date):
        return date.fromisoformat
    return _unescape


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(lambda m: _UNESCAPES[m.group(1)], text) if "\\" in text else text


def parse(name: str, rows: str) -> list[dict[str, Any]]:
    """COPY text rows of table `name` as the values a Core insert takes."""
    table = TABLES[name]
    columns = COLUMNS[name]
    readers = [_reader(table.c[c]) for c in columns]
    out = []
    for row in rows.split("\n")[:-1]:  # not splitlines(): only \n ends a row
        values = row.split("\t")
        out.append({c: None if v == NULL else read(v) for c, read, v in zip(columns, readers, values, strict=True)})
    return out


def _write_generic(session: Session, chunk: Chunk) -> None:
    for name in COLUMNS:
        rows = chunk.tables.get(name)
        if rows:
            session.execute(insert(TABLES[name]), parse(name, rows))
    if chunk.accounts:
        accounts: Table = PointAccount.__table__  # type: ignore[assignment]
        session.execute(
            update(accounts)
            .where(accounts.c.member_id == bindparam("m"))
            .values(
                available=bindparam("a"),
                pending=bindparam("p"),
                lifetime_earned=bindparam("l"),
                redeemed=bindparam("r"),
                expired=bindparam("e"),
                updated_at=bindparam("u"),
            ),
            [
                {"m": uuid.UUID(m), "a": a, "p": p, "l": life, "r": r, "e": e, "u": datetime.fromtimestamp(u, UTC)}
                for m, a, p, life, r, e, u in chunk.accounts
            ],
        )
