"""A demo programme for a newcomer: Northwind Auto Service, a chain of car service centres.

`run` fills an empty database in these steps:

1. the programme, through the services the API calls (so the audit log shows it): name, currency
   RUB, time zone Europe/Moscow, points held 7 days and expiring 365 days after the purchase; the
   earning rules a car service chain runs (a point per 100 RUB, more on tyres, double on oil
   changes, a visit bonus, batteries, welcome, survey and referral bonuses); a Bronze, Silver and
   Gold ladder on a year's spend; a rewards catalogue (two discounts, a free wash, a gift in limited
   stock, priority booking for Gold);
2. members — Russian, English and a few Chinese names, phones, emails, birth dates, cars as
   custom attributes, enrolment over the last two years at the chain's locations, a loyalty card
   for most — each with their history since enrolment, a chunk of BATCH_SIZE members per
   transaction: the members through `members.importing.insert_members`, their history through
   `demo_history` (the welcome bonus, visits to their usual service centre with baskets of car
   services and parts, some paid partly with points, a few returns and refunds, answered surveys,
   the nightly release-pending and expire-points runs, immediate tier upgrades), which writes the
   rows the services would write, in bulk: COPY on PostgreSQL. A million members with some ten
   million ledger entries take minutes; their histories are generated in a worker process
   (POOL_FROM members and more) while this one writes;
3. the release-pending, expire-points and refresh-segments jobs as of now, as `patron jobs run`
   runs them (and recorded in the audit log the same way);
4. what staff did afterwards (after the history, as it happened, so blocked members have their
   purchases from before): a few members blocked, lost cards blocked, worn cards replaced, bank
   cards linked;
5. API keys: an admin key and a cashier key for the first location.

Everything but the API keys follows from the seed and the clock: the same seed on the same day
(and second) gives the same members, ids, numbers, cards, purchases and balances.
"""

from __future__ import annotations

import collections
import math
import multiprocessing
import os
import random
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from patron import demo_history as history
from patron.access import service as access
from patron.access.principal import Actor
from patron.access.roles import Role
from patron.audit import service as audit
from patron.cards import service as cards
from patron.cards.models import Card
from patron.db import Database
from patron.errors import Conflict
from patron.jobs import registry as jobs
from patron.kit import clock
from patron.kit.ids import DICTATION_ALPHABET
from patron.kit.luhn import with_check_digit
from patron.members import service as members
from patron.members.importing import NewMember, batched, in_background, insert_members
from patron.members.models import Member
from patron.program import service as program_service
from patron.program.schemas import Expiry, ProgramPatch
from patron.rewards import service as rewards
from patron.rewards.schemas import RewardIn
from patron.rules import service as rules
from patron.rules.schemas import RuleIn
from patron.tiers import service as tiers
from patron.tiers.schemas import LadderIn

DEFAULT_MEMBERS = 200
DEFAULT_SEED = 1
BATCH_SIZE = 5000
PROGRAM_NAME = "Northwind Auto Service Club"
TIMEZONE = "Europe/Moscow"
ENROLMENT_DAYS = 730
# Staff accounts for the back office at /admin, one per role; a demo password, printed on purpose.
STAFF_PASSWORD = "patron-demo"  # noqa: S105 - the demo's printed sign-in, not a secret
STAFF_USERS = tuple((role, f"{role.value}@demo.patron") for role in Role)
# From this many members the histories are generated in a worker process.
POOL_FROM = 20_000


@dataclass(frozen=True)
class Location:
    code: str
    name: str
    address: str
    weight: int  # share of the members who enrolled there


LOCATIONS = (
    Location("MSK-01", "Northwind Tverskaya", "Moscow, Tverskaya St 18", 30),
    Location("MSK-02", "Northwind Varshavka", "Moscow, Varshavskoye Hwy 125", 25),
    Location("MSK-03", "Northwind Khimki", "Khimki, Leningradskoye Hwy 39", 15),
    Location("SPB-01", "Northwind Primorsky", "Saint Petersburg, Savushkina St 112", 20),
    Location("KZN-01", "Northwind Kazan", "Kazan, Pobedy Ave 91", 10),
)

_RU_MALE = [
    "Александр",
    "Дмитрий",
    "Максим",
    "Сергей",
    "Андрей",
    "Алексей",
    "Артём",
    "Илья",
    "Кирилл",
    "Михаил",
    "Никита",
    "Роман",
    "Егор",
    "Иван",
    "Владимир",
    "Павел",
    "Николай",
    "Олег",
    "Евгений",
    "Константин",
    "Игорь",
    "Денис",
    "Виктор",
    "Юрий",
    "Антон",
    "Георгий",
    "Тимур",
]
_RU_FEMALE = [
    "Анна",
    "Мария",
    "Елена",
    "Ольга",
    "Наталья",
    "Екатерина",
    "Татьяна",
    "Ирина",
    "Светлана",
    "Юлия",
    "Анастасия",
    "Дарья",
    "Ксения",
    "Виктория",
    "Полина",
    "Алина",
    "Марина",
    "Валерия",
    "Вера",
    "Людмила",
    "Софья",
]
_RU_SURNAMES = [
    "Иванов",
    "Смирнов",
    "Кузнецов",
    "Попов",
    "Васильев",
    "Петров",
    "Соколов",
    "Михайлов",
    "Новиков",
    "Фёдоров",
    "Морозов",
    "Волков",
    "Алексеев",
    "Лебедев",
    "Семёнов",
    "Егоров",
    "Павлов",
    "Козлов",
    "Степанов",
    "Николаев",
    "Орлов",
    "Андреев",
    "Макаров",
    "Никитин",
    "Захаров",
    "Зайцев",
    "Соловьёв",
    "Борисов",
    "Яковлев",
    "Григорьев",
    "Романов",
    "Воробьёв",
    "Сергеев",
    "Кузьмин",
    "Фролов",
    "Дмитриев",
    "Королёв",
    "Гусев",
    "Киселёв",
    "Ильин",
    "Максимов",
    "Поляков",
    "Сорокин",
    "Виноградов",
    "Ковалёв",
    "Белов",
    "Медведев",
    "Антонов",
    "Тарасов",
    "Жуков",
    "Баранов",
    "Филиппов",
    "Комаров",
    "Давыдов",
    "Беляев",
    "Богданов",
    "Осипов",
    "Сидоров",
    "Матвеев",
    "Титов",
    "Марков",
    "Миронов",
    "Крылов",
    "Куликов",
    "Карпов",
    "Власов",
    "Мельников",
    "Денисов",
    "Тихонов",
    "Казаков",
    "Данилов",
    "Чернов",
    "Щербаков",
    "Калинин",
    "Быков",
    "Маслов",
    "Лазарев",
    "Голубев",
    "Прохоров",
    "Ермаков",
    "Гончаров",
    "Котов",
    "Громов",
    "Вишневский",
    "Покровский",
    "Успенский",
    "Ковальский",
]
_EN_MALE = [
    "James",
    "Oliver",
    "Thomas",
    "Daniel",
    "Michael",
    "William",
    "Jack",
    "Harry",
    "George",
    "Samuel",
    "Edward",
    "Henry",
    "Lucas",
]
_EN_FEMALE = [
    "Emma",
    "Olivia",
    "Sophie",
    "Charlotte",
    "Emily",
    "Grace",
    "Lucy",
    "Amelia",
    "Hannah",
    "Chloe",
    "Isabella",
    "Alice",
]
_EN_SURNAMES = [
    "Smith",
    "Johnson",
    "Brown",
    "Taylor",
    "Wilson",
    "Davies",
    "Evans",
    "Walker",
    "Wright",
    "Thompson",
    "Robinson",
    "Green",
    "Hall",
    "Clarke",
    "Hughes",
    "Wood",
    "Turner",
    "Cooper",
    "Hill",
    "Ward",
    "Morris",
    "King",
    "Baker",
    "Harris",
    "Martin",
]
# (characters, pinyin) so that emails read as people write them.
_ZH_SURNAMES = (("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"), ("杨", "yang"))
_ZH_GIVEN = (
    ("伟", "wei"),
    ("芳", "fang"),
    ("娜", "na"),
    ("敏", "min"),
    ("静", "jing"),
    ("磊", "lei"),
    ("洋", "yang"),
    ("杰", "jie"),
    ("婷", "ting"),
    ("浩然", "haoran"),
    ("子涵", "zihan"),
)
_TRANSLIT = str.maketrans(
    {
        **dict(zip("абвгдеёзийклмнопрстуфыэ", "abvgdeeziyklmnoprstufye", strict=True)),
        "ж": "zh",
        "х": "kh",
        "ц": "ts",
        "ч": "ch",
        "ш": "sh",
        "щ": "shch",
        "ъ": "",
        "ь": "",
        "ю": "yu",
        "я": "ya",
    }
)
# Reserved for examples (RFC 2606): demo mail can never reach a real inbox.
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")
CARS = {
    "Lada": ("Vesta", "Granta", "Niva Travel", "Largus"),
    "Kia": ("Rio", "Sportage", "Ceed", "K5"),
    "Hyundai": ("Solaris", "Creta", "Tucson", "Santa Fe"),
    "Toyota": ("Camry", "RAV4", "Corolla", "Land Cruiser Prado"),
    "Volkswagen": ("Polo", "Tiguan", "Passat"),
    "Skoda": ("Octavia", "Rapid", "Kodiaq"),
    "Renault": ("Logan", "Duster", "Kaptur"),
    "Haval": ("Jolion", "F7", "Dargo"),
    "Chery": ("Tiggo 4 Pro", "Tiggo 7 Pro"),
    "Geely": ("Coolray", "Monjaro"),
    "BMW": ("X5", "3 Series", "5 Series"),
    "Mercedes-Benz": ("E-Class", "GLC"),
    "Nissan": ("Qashqai", "X-Trail"),
    "Mazda": ("CX-5", "6"),
}
_CAR_WEIGHTS = (16, 14, 14, 12, 8, 8, 7, 6, 5, 4, 3, 3, 3, 2)
_CHANNELS = (("pos", 60), ("web", 20), ("mobile", 15), ("call_center", 5))
_BLOCK_REASONS = (
    "Duplicate account: the same person enrolled twice",
    "Fraud review: points collected on other people's receipts",
    "Abusive behaviour towards staff",
)
_CARD_BLOCK_REASONS = ("Reported lost by the member", "Reported stolen", "Damaged magnetic stripe, reissue pending")
# Test card numbers published by the card schemes (Visa, Mastercard) and a MIR-range number with a
# valid check digit: they pass Luhn and belong to nobody.
BANK_TEST_PANS = ("4111111111111111", "5555555555554444", with_check_digit("220000000000000"))


@dataclass(frozen=True)
class _Bijection:
    """i → (a·i + b) mod m with gcd(a, m) = 1: distinct codes for distinct i, no memory, no lookups."""

    a: int
    b: int
    m: int

    @classmethod
    def seeded(cls, rng: random.Random, m: int) -> _Bijection:
        while True:
            a = rng.randrange(1, m)
            if math.gcd(a, m) == 1:
                return cls(a, rng.randrange(m), m)

    def __call__(self, i: int) -> int:
        return (self.a * i + self.b) % self.m


@dataclass(frozen=True)
class Plan:
    """Everything that decides the demo members; members_of(plan) regenerates them."""

    count: int
    seed: int
    now: datetime
    card_prefix: str
    blocked_members: frozenset[int]
    blocked_cards: frozenset[int]
    replaced_cards: frozenset[int]
    bank_cards: tuple[int, ...]


# The first member with a phone and a card who is none of the plan's special cases has this
# phone: the README's API example (`identify?phone=89161234567`) finds it.
SAMPLE_PHONE = "+79161234567"


@dataclass
class DemoResult:
    members: int = 0
    cards: int = 0
    blocked_members: int = 0
    blocked_cards: int = 0
    replaced_cards: int = 0
    bank_cards: int = 0
    admin_key: str = ""
    cashier_key: str = ""
    cashier_location: str = LOCATIONS[0].code
    # A member to try the API with: (name, phone, card number)
    sample: tuple[str, str, str] | None = None
    locations: tuple[Location, ...] = field(default=LOCATIONS)
    # The history (step 2): how many members have one (all), and what it did.
    history_members: int = 0
    purchases: int = 0
    returns: int = 0
    surveys: int = 0
    points_earned: int = 0  # by purchases
    points_bonus: int = 0  # welcome and survey bonuses
    points_redeemed: int = 0
    points_reversed: int = 0  # taken back by returns
    points_restored: int = 0  # given back by returns of purchases paid with points
    points_released: int = 0  # made spendable by release-pending, nightly and as of now
    points_expired: int = 0  # by expire-points, nightly and as of now
    ledger_entries: int = 0
    tier_changes: int = 0
    # (tier name, members on it), from the base tier up.
    tiers: tuple[tuple[str, int], ...] = ()

    @property
    def points_issued(self) -> int:
        return self.points_earned + self.points_bonus


def member_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Member)) or 0)


def _rng(purpose: str, seed: int) -> random.Random:
    # Not for secrets: demo data has to come out the same for the same seed.
    return random.Random(f"{purpose}:{seed}")  # noqa: S311


def plan(count: int, seed: int, now: datetime, card_prefix: str) -> Plan:
    rng = _rng("plan", seed)
    small = count < 20
    blocked = set() if small else set(rng.sample(range(count), min(20, count // 70 + 1)))
    picked = [] if small else rng.sample(range(count), min(30, count // 40 + 2))
    cut = len(picked) * 2 // 3
    free = [i for i in range(min(count, 50)) if i not in blocked and i not in picked]
    return Plan(
        count=count,
        seed=seed,
        now=now,
        card_prefix=card_prefix,
        blocked_members=frozenset(blocked),
        blocked_cards=frozenset(picked[:cut]),
        replaced_cards=frozenset(picked[cut:]),
        bank_cards=tuple(rng.sample(free, min(len(BANK_TEST_PANS), len(free)))),
    )


def _pick(rng: random.Random, weighted: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def _feminine(surname: str) -> str:
    if surname.endswith("ский"):
        return surname[:-2] + "ая"
    return surname + "а"


class _Codes:
    def __init__(self, rng: random.Random, card_prefix: str) -> None:
        self.number = _Bijection.seeded(rng, 10**8)
        self.phone = _Bijection.seeded(rng, 10**9)
        self.referral = _Bijection.seeded(rng, len(DICTATION_ALPHABET) ** 8)
        self.card_digits = 15 - len(card_prefix)
        self.card = _Bijection.seeded(rng, 10**self.card_digits)
        self.card_prefix = card_prefix

    def referral_code(self, i: int) -> str:
        value, out = self.referral(i), []
        for _ in range(8):
            value, digit = divmod(value, len(DICTATION_ALPHABET))
            out.append(DICTATION_ALPHABET[digit])
        return "".join(out)

    def card_number(self, i: int) -> str:
        return with_check_digit(f"{self.card_prefix}{self.card(i):0{self.card_digits}d}")


def members_of(p: Plan) -> Iterator[NewMember]:
    """The demo members of plan `p`, in order; the same plan gives the same members."""
    rng = _rng("members", p.seed)
    codes = _Codes(rng, p.card_prefix)
    zone = ZoneInfo(TIMEZONE)
    earliest = first_day(p.now)
    locations = tuple((loc.code, loc.weight) for loc in LOCATIONS)
    makes = list(CARS)
    special = p.blocked_members | p.blocked_cards | p.replaced_cards | set(p.bank_cards)
    sample_due = True
    for i in range(p.count):
        language = _pick(rng, (("ru", 82), ("en", 13), ("zh", 5)))
        female = rng.random() < 0.45
        if language == "ru":
            first = rng.choice(_RU_FEMALE if female else _RU_MALE)
            last = rng.choice(_RU_SURNAMES)
            last = _feminine(last) if female else last
            first_latin, last_latin = first.lower().translate(_TRANSLIT), last.lower().translate(_TRANSLIT)
        elif language == "en":
            first, last = rng.choice(_EN_FEMALE if female else _EN_MALE), rng.choice(_EN_SURNAMES)
            first_latin, last_latin = first.lower(), last.lower()
        else:
            (last, last_latin), (first, first_latin) = rng.choice(_ZH_SURNAMES), rng.choice(_ZH_GIVEN)
        # The index in the address keeps every email unique without a lookup.
        local = rng.choice(
            (f"{first_latin}.{last_latin}", f"{first_latin[0]}{last_latin}", f"{last_latin}.{first_latin}")
        )
        contact = rng.random()
        email = f"{local}{i}@{rng.choice(_EMAIL_DOMAINS)}" if contact > 0.08 else None
        birth_date = None
        if rng.random() < 0.85:
            age_days = int(rng.triangular(18, 75, 38) * 365.25)
            birth_date = p.now.date() - timedelta(days=age_days)
        channel = _pick(rng, _CHANNELS)
        location = _pick(rng, locations) if channel in ("pos", "call_center") else None
        day = earliest + timedelta(days=int(ENROLMENT_DAYS * (i + rng.random()) / p.count))
        local_time = datetime(day.year, day.month, day.day, 9, tzinfo=zone) + timedelta(
            seconds=rng.randrange(12 * 3600)
        )
        enrolled_at = min(local_time, p.now)
        attributes = {}
        if rng.random() < 0.9:
            make = rng.choices(makes, weights=_CAR_WEIGHTS)[0]
            attributes = {
                "car_make": make,
                "car_model": rng.choice(CARS[make]),
                "car_year": str(rng.randint(2008, enrolled_at.year)),
            }
        has_card = rng.random() < 0.85 or i in p.blocked_cards or i in p.replaced_cards
        phone = None
        if contact < 0.95:
            phone = f"+79{codes.phone(i):09d}"
            if sample_due and has_card and i not in special:
                phone, sample_due = SAMPLE_PHONE, False
            elif phone == SAMPLE_PHONE:  # the sample's: a number beyond every member's instead
                phone = f"+79{codes.phone(p.count + i):09d}"
        yield NewMember(
            first_name=first,
            last_name=last,
            email=email,
            phone=phone,
            birth_date=birth_date,
            language=language,
            attributes=attributes,
            marketing_email=email is not None and rng.random() < 0.55,
            marketing_sms=phone is not None and rng.random() < 0.4,
            marketing_push=channel == "mobile" and rng.random() < 0.7,
            card=codes.card_number(i) if has_card else None,
            number=with_check_digit(f"1{codes.number(i):08d}"),
            referral_code=codes.referral_code(i),
            channel=channel,
            location=location,
            enrolled_at=enrolled_at,
        )


def replacement_card(p: Plan, i: int) -> str:
    """The new card number of member i when plan `p` replaces its card: beyond every first card."""
    codes = _Codes(_rng("members", p.seed), p.card_prefix)
    return codes.card_number(p.count + i)


# --- The programme's configuration (step 1), as a marketer would send it to the API -------------

EARNING_RULES: tuple[dict[str, Any], ...] = (
    {"name": "1 point per 100 RUB", "kind": "spend", "points": 1, "per_amount": "100"},
    {
        "name": "Tyres: +1 point per 100 RUB on tyres and tyre service",
        "kind": "category",
        "category": "tyres",
        "points": 1,
        "per_amount": "100",
    },
    {"name": "Double points on oil changes", "kind": "multiplier", "category": "oil_change", "factor": "2"},
    {"name": "Visit bonus", "kind": "visit", "points": 20, "conditions": {"min_total": "1000"}},
    {"name": "100 points for a new battery", "kind": "sku", "sku": ["BAT-60AH", "BAT-80AH"], "points": 100},
    {"name": "Welcome to the club", "kind": "welcome", "points": 300},
    {"name": "Service survey answered", "kind": "event", "event_type": "survey_answered", "points": 50},
    {"name": "Bring a friend", "kind": "referral", "points": 500},
)
TIER_LADDER: dict[str, Any] = {
    "metric": "spend",
    "window_days": 365,
    "tiers": [
        {
            "code": "bronze",
            "name": "Bronze",
            "threshold": 0,
            "multiplier": "1",
            "benefits": ["Points on every visit", "Service history online"],
        },
        {
            "code": "silver",
            "name": "Silver",
            "threshold": 25_000,
            "multiplier": "1.25",
            "benefits": ["Priority booking", "Free car wash with every service"],
        },
        {
            "code": "gold",
            "name": "Gold",
            "threshold": 60_000,
            "multiplier": "1.5",
            "benefits": ["Priority booking", "Personal manager", "Courtesy car during repairs"],
        },
    ],
}
PENDING_DAYS = 7
EXPIRY_DAYS = 365
# The rewards catalogue; the free wash is SRV-WASH, which the demo's baskets contain.
REWARDS: tuple[dict[str, Any], ...] = (
    {
        "name": "10 % off a service",
        "description": "Ten percent off the next service visit, up to 3,000 RUB",
        "kind": "percent_discount",
        "value": "10",
        "max_discount": "3000",
        "cost_points": 300,
        "valid_days": 60,
    },
    {
        "name": "500 RUB off",
        "description": "500 RUB off any purchase",
        "kind": "amount_discount",
        "value": "500",
        "cost_points": 500,
        "valid_days": 90,
    },
    {
        "name": "Free car wash",
        "description": "One exterior wash free with your next visit",
        "kind": "free_item",
        "sku": "SRV-WASH",
        "cost_points": 250,
        "valid_days": 30,
    },
    {
        "name": "Priority booking",
        "description": "A service slot within 24 hours for a month",
        "kind": "privilege",
        "cost_points": 150,
        "tiers": ["gold"],
        "valid_days": 30,
    },
    {
        "name": "Northwind thermal mug",
        "description": "A branded steel mug, while stocks last",
        "kind": "gift",
        "cost_points": 400,
        "stock": 50,
        "limit_per_member": 1,
        "valid_days": 30,
    },
)


def _create_rewards(session: Session, actor: Actor) -> None:
    for reward in REWARDS:
        rewards.create(session, actor, RewardIn.model_validate(reward))


def _configure_programme(session: Session, actor: Actor) -> None:
    program_service.update(
        session,
        actor,
        ProgramPatch(
            name=PROGRAM_NAME,
            currency="RUB",
            timezone=TIMEZONE,
            phone_region="RU",
            pending_days=PENDING_DAYS,
            expiry=Expiry(policy="after_days", days=EXPIRY_DAYS),
        ),
    )
    tiers.put_ladder(session, actor, LadderIn.model_validate(TIER_LADDER))
    for rule in EARNING_RULES:
        rules.create(session, actor, RuleIn.model_validate(rule))
    _create_rewards(session, actor)


def _run_job(db: Database, actor: Actor, name: str, as_of: datetime) -> dict[str, Any]:
    """A scheduled job, run and recorded as `patron jobs run` does."""
    out = jobs.run(db, name, as_of)
    db.write(lambda s: audit.record(s, actor, "job.run", "job", name, {"as_of": as_of.isoformat(), **out}))
    return out


def tier_counts(session: Session) -> tuple[tuple[str, int], ...]:
    counts = dict(session.execute(select(Member.tier_code, func.count()).group_by(Member.tier_code)).all())
    return tuple((t.name, int(counts.get(t.code, 0))) for t in tiers.ladder(session))


def first_day(now: datetime) -> date:
    """The earliest local day a demo member can have enrolled on."""
    return now.astimezone(ZoneInfo(TIMEZONE)).date() - timedelta(days=ENROLMENT_DAYS)


def history_params(p: Plan, actor: Actor) -> history.Params:
    return history.Params(
        seed=p.seed,
        now=int(p.now.timestamp()),
        first_day=first_day(p.now),
        locations=tuple((loc.code, loc.weight) for loc in LOCATIONS),
        actor_kind=actor.kind,
        actor_id=actor.id,
        # The ids sort before any made after the demo, and in the order the members were made.
        id_base_ms=int(p.now.timestamp() * 1000) - p.count - 1000,
    )


def subject(params: history.Params, index: int, m: NewMember) -> history.Subject:
    """Member `index` of the plan, given its id; what its history needs to know about it."""
    m.id = history.member_uuid(params, index)
    assert m.number is not None and m.enrolled_at is not None  # members_of gives them
    return history.Subject(
        index,
        str(m.id),
        m.number,
        int(m.enrolled_at.timestamp()),
        m.channel,
        m.location,
        m.attributes.get("car_make"),
    )


def _histories(
    programme: history.Programme,
    params: history.Params,
    batches: Iterator[tuple[list[NewMember], list[history.Subject]]],
    processes: int,
) -> Iterator[tuple[list[NewMember], history.Chunk]]:
    """Each batch of members with its history, in order; generated in `processes` worker
    processes, a few batches ahead of the writer, or here when processes is 0."""
    if processes < 1:
        for batch, subjects in batches:
            yield batch, history.simulate(programme, params, subjects)
        return
    # fork, as members.importing does: quick, and the children only compute.
    method = "fork" if sys.platform == "linux" else "spawn"
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context(method)) as pool:
        pending: collections.deque[tuple[list[NewMember], Future[history.Chunk]]] = collections.deque()
        try:
            for batch, subjects in batches:
                pending.append((batch, pool.submit(history.simulate, programme, params, subjects)))
                if len(pending) > processes + 1:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def run(
    db: Database,
    actor: Actor,
    *,
    count: int = DEFAULT_MEMBERS,
    seed: int = DEFAULT_SEED,
    secret: bytes,
    batch_size: int = BATCH_SIZE,
    on_progress: Callable[[int], None] | None = None,
    processes: int | None = None,
) -> DemoResult:
    """Fill an empty programme with the demo; see the module docstring for the steps.

    `on_progress` is told of members as they are written with their history, `count` in all.
    `processes`: worker processes for the histories (default: one from POOL_FROM members on a
    machine with more than one core, else none)."""
    now = clock.now().replace(microsecond=0)  # histories count whole seconds
    result = DemoResult()

    def configure(session: Session) -> tuple[Plan, str, str, history.Programme]:
        existing = member_count(session)
        if existing:
            raise Conflict(f"The database already has {existing} members; the demo fills an empty programme only")
        _configure_programme(session, actor)
        program = program_service.get(session)
        p = plan(count, seed, now, program.card_prefix)
        return p, program.rules_version, tiers.base_tier(session).code, history.Programme.read(session)

    p, rules_version, base_tier, programme = db.write(configure)
    params = history_params(p, actor)
    bulk = count >= POOL_FROM
    if processes is None:
        # The writer and the database need a core between them.
        processes = max((os.cpu_count() or 1) - 1, 1) if bulk and sys.platform == "linux" else 0
    unchecked = bulk and db.read(history.may_skip_checks)

    def batches() -> Iterator[tuple[list[NewMember], list[history.Subject]]]:
        for start, batch in enumerate(batched(members_of(p), batch_size)):
            yield batch, [subject(params, start * batch_size + i, m) for i, m in enumerate(batch)]

    # Members of the plan's special cases, kept as they pass by: (id, card number).
    special = p.blocked_members | p.blocked_cards | p.replaced_cards | set(p.bank_cards)
    kept: dict[int, tuple[uuid.UUID, str | None]] = {}
    tally = history.Tally()
    index = 0
    for batch, chunk in in_background(_histories(programme, params, batches(), processes)):
        for m, tier in zip(batch, chunk.tiers, strict=True):
            m.tier_code = tier

        def write(session: Session, batch: list[NewMember] = batch, chunk: history.Chunk = chunk) -> None:
            if unchecked:
                history.skip_checks(session)
            insert_members(session, batch, rules_version=rules_version, base_tier=base_tier)
            history.write(session, chunk)

        db.write(write)
        for m in batch:
            assert m.id is not None
            if index in special:
                kept[index] = (m.id, m.card)
            if m.phone == SAMPLE_PHONE and m.card:
                result.sample = (f"{m.first_name} {m.last_name}", m.phone, m.card)
            index += 1
        result.members += len(batch)
        result.cards += sum(1 for m in batch if m.card)
        tally.add(chunk.tally)
        if on_progress is not None:
            on_progress(len(batch))

    result.history_members = tally.members
    result.purchases, result.returns, result.surveys = tally.purchases, tally.returns, tally.surveys
    result.points_earned, result.points_bonus = tally.points_earned, tally.points_bonus
    result.points_redeemed, result.points_reversed = tally.points_redeemed, tally.points_reversed
    result.points_restored, result.tier_changes = tally.points_restored, tally.tier_changes
    if db.dialect == "postgresql":
        # Fresh tables have no statistics yet: the jobs below would be planned blind.
        db.write(lambda s: s.execute(text("ANALYZE")))
    result.points_released = tally.points_released + _run_job(db, actor, "release-pending", now)["points"]
    expired = _run_job(db, actor, "expire-points", now)
    result.points_expired = tally.points_expired + expired["points"]
    result.ledger_entries = tally.entries + expired["members"]  # one expire entry per member
    _run_job(db, actor, "refresh-segments", now)

    def staff_actions(session: Session) -> tuple[int, int, int, int]:
        rng = _rng("actions", seed)
        blocked_cards = [kept[i][1] for i in sorted(p.blocked_cards)]
        replaced_cards = [(i, kept[i][1]) for i in sorted(p.replaced_cards)]
        for number in blocked_cards:
            if number is not None:
                cards.block(session, actor, number, rng.choice(_CARD_BLOCK_REASONS))
        for i, number in replaced_cards:
            if number is not None:
                cards.replace(session, actor, number, replacement_card(p, i))
        for i, pan in zip(p.bank_cards, BANK_TEST_PANS, strict=False):
            cards.add_bank_card(session, actor, kept[i][0], pan, secret)
        for i in sorted(p.blocked_members):
            members.block(session, actor, kept[i][0], rng.choice(_BLOCK_REASONS))
        return (
            sum(1 for n in blocked_cards if n),
            sum(1 for _, n in replaced_cards if n),
            min(len(p.bank_cards), len(BANK_TEST_PANS)),
            len(p.blocked_members),
        )

    # Counted from what the transaction returns: Database.write may run it more than once.
    result.blocked_cards, result.replaced_cards, result.bank_cards, result.blocked_members = db.write(staff_actions)
    result.cards += result.replaced_cards
    result.tiers = db.read(tier_counts)

    def keys(session: Session) -> tuple[str, str]:
        for role, email in STAFF_USERS:  # back-office sign-ins, printed by `patron demo`
            access.create_user(
                session, actor, email=email, password=STAFF_PASSWORD, role=role, name=f"Demo {role.value}"
            )
        _, admin = access.create_key(session, actor, role=Role.ADMIN, name="demo admin")
        _, cashier = access.create_key(
            session,
            actor,
            role=Role.CASHIER,
            name=f"demo till {result.cashier_location}",
            location=result.cashier_location,
        )
        return admin, cashier

    result.admin_key, result.cashier_key = db.write(keys)
    return result


def sample_member(session: Session) -> tuple[str, str, str] | None:
    """The member with SAMPLE_PHONE and its loyalty card: (name, phone, card number)."""
    row = session.execute(
        select(Member.first_name, Member.last_name, Card.number)
        .join(Card, Card.member_id == Member.id)
        .where(Member.phone == SAMPLE_PHONE, Card.kind == "loyalty", Card.status == "active")
        .limit(1)
    ).first()
    return (
        None if row is None or row.number is None else (f"{row.first_name} {row.last_name}", SAMPLE_PHONE, row.number)
    )


def portal_member(session: Session) -> str | None:
    """The email of a demo member to try the member portal with (its code lands in /admin/mailbox)."""
    return session.scalars(
        select(Member.email)
        .where(Member.status == "active", Member.email.is_not(None))
        .order_by(Member.number)
        .limit(1)
    ).first()
