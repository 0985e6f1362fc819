"""A demo programme for a newcomer: Northwind Auto Service, a chain of car service centres.

`run` fills an empty database in these steps, each in its own transaction (the history: one per
member):

1. the programme, through the services the API calls (so the audit log shows it): name, currency
   RUB, time zone Europe/Moscow, points held 7 days and expiring 365 days after the purchase; the
   earning rules a car service chain runs (a point per 100 RUB, more on tyres, double on oil
   changes, a visit bonus, batteries, welcome, survey and referral bonuses); a Bronze, Silver and
   Gold ladder on a year's spend;
2. members — Russian, English and a few Chinese names, phones, emails, birth dates, cars as
   custom attributes, enrolment over the last six months at the chain's locations, a loyalty card
   for most — inserted in bulk through `members.importing.insert_members`, so a million demo
   members take as long as importing them;
3. their history since enrolment, member by member in time order, through the services the API
   calls with the clock set to when each thing happened: the welcome bonus at enrolment
   (`rules.bonuses.award`, as `members.service.enrol` pays it), visits to the member's usual
   service centre with baskets of car services and parts (`transactions.service.post`, some paid
   partly with points), a few returns (`process_return`) and answered surveys (`events.service`);
   then the release-pending and expire-points jobs as of now. Rules, tiers and balances come out as
   real use would make them; nothing is written to the ledger directly. Above HISTORY_ALL_UP_TO
   members only the first HISTORY_MEMBERS get a history (the rest have none);
4. what staff did afterwards (after the history, as it happened, so blocked members have their
   purchases from before): a few members blocked, lost cards blocked, worn cards replaced, bank
   cards linked;
5. API keys: an admin key and a cashier key for the first location.

Everything but the API keys and the database ids follows from the seed and the clock: the same
seed on the same day gives the same members, numbers, cards, purchases and balances.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.access import service as access
from patron.access.principal import Actor
from patron.access.roles import Role
from patron.audit import service as audit
from patron.cards import service as cards
from patron.db import Database
from patron.errors import Conflict
from patron.events import service as events
from patron.events.schemas import EventIn
from patron.jobs import registry as jobs
from patron.kit import clock
from patron.kit.ids import DICTATION_ALPHABET
from patron.kit.luhn import with_check_digit
from patron.ledger import service as ledger
from patron.ledger.models import PointLot
from patron.members import service as members
from patron.members.importing import NewMember, batched, in_background, insert_members
from patron.members.models import Member
from patron.program import service as program_service
from patron.program.schemas import Expiry, ProgramPatch
from patron.rules import bonuses, engine
from patron.rules import service as rules
from patron.rules.schemas import RuleIn
from patron.tiers import service as tiers
from patron.tiers.schemas import LadderIn
from patron.transactions import service as transactions
from patron.transactions.schemas import ItemIn, ReturnIn, ReturnItemIn, TransactionIn, TransactionOut

DEFAULT_MEMBERS = 200
DEFAULT_SEED = 1
BATCH_SIZE = 5000
PROGRAM_NAME = "Northwind Auto Service Club"
TIMEZONE = "Europe/Moscow"
ENROLMENT_DAYS = 182
SERVER = "http://127.0.0.1:8000"
# Every member gets a history up to this many members; above it only the first HISTORY_MEMBERS do
# (a history takes a few milliseconds per visit: bulk history at scale is for later).
HISTORY_ALL_UP_TO = 5000
HISTORY_MEMBERS = 2000


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
    # The history (step 3): how many members have one, and what it did.
    history_members: int = 0
    purchases: int = 0
    returns: int = 0
    surveys: int = 0
    points_earned: int = 0  # by purchases
    points_bonus: int = 0  # welcome and survey bonuses
    points_redeemed: int = 0
    points_reversed: int = 0  # taken back by returns
    points_restored: int = 0  # given back by returns of purchases paid with points
    points_released: int = 0  # made spendable by the release-pending job as of now
    points_expired: int = 0
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
    first_day = p.now.astimezone(zone).date() - timedelta(days=ENROLMENT_DAYS)
    locations = tuple((loc.code, loc.weight) for loc in LOCATIONS)
    makes = list(CARS)
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
        phone = f"+79{codes.phone(i):09d}" if contact < 0.95 else None
        birth_date = None
        if rng.random() < 0.85:
            age_days = int(rng.triangular(18, 75, 38) * 365.25)
            birth_date = p.now.date() - timedelta(days=age_days)
        channel = _pick(rng, _CHANNELS)
        location = _pick(rng, locations) if channel in ("pos", "call_center") else None
        day = first_day + timedelta(days=int(ENROLMENT_DAYS * (i + rng.random()) / p.count))
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


# --- What the service centres sell ------------------------------------------------------------


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
_VISITS = (("oil", 30), ("tyres", 10), ("brakes", 8), ("diagnostics", 10), ("wash", 16), ("ac", 4), ("battery", 3))
_SEASONS = {
    "tyres": {3: 4, 4: 6, 5: 2, 10: 6, 11: 5, 12: 2},
    "ac": {5: 2, 6: 3, 7: 3, 8: 2},
    "battery": {11: 2, 12: 3, 1: 3, 2: 2},
}
# Dearer cars pay more for the same work and parts; Moscow more than the regions.
_MAKE_PRICES = {"BMW": 1.7, "Mercedes-Benz": 1.8, "Toyota": 1.2, "Volkswagen": 1.15, "Skoda": 1.1, "Mazda": 1.1}
_MAKE_PRICES |= {"Nissan": 1.1, "Lada": 0.75, "Renault": 0.9}
_LOCATION_PRICES = {"MSK-03": 0.97, "SPB-01": 0.95, "KZN-01": 0.85}
# How often members come back, on average: regulars, ordinary members, occasional ones.
_PROFILES = ((32, 22), (70, 48), (160, 30))
REDEEM_FROM = 500  # members pay with points once they have this many,
REDEEM_SHARE = 0.45  # at this share of their visits, up to half the bill
RETURN_SHARE = 0.08  # of the visits with goods sold over the counter
REFUND_SHARE = 0.01  # of the visits: a goodwill refund of part of the bill
SURVEY_SHARE = 0.12  # of the visits


@dataclass(frozen=True)
class Line:
    product: Product
    quantity: int
    unit_price: int  # RUB


@dataclass(frozen=True)
class Step:
    """One thing in a member's history: `at` when it happened, `posted` when the till sent it."""

    at: datetime
    posted: datetime
    kind: str  # welcome | purchase | return | refund | survey
    visit: int = 0  # the purchase it belongs to (all kinds but welcome)
    lines: tuple[Line, ...] = ()  # bought (purchase) or brought back (return)
    refund: int = 0  # RUB (refund)


@dataclass(frozen=True)
class Subject:
    """A demo member with a history: what the history needs to know about them."""

    index: int
    id: uuid.UUID
    number: str
    identify: tuple[str, str]  # how the till finds them: ("card" | "phone" | "member_id", value)
    enrolled_at: datetime
    channel: str
    location: str | None
    car_make: str | None


@dataclass(frozen=True)
class History:
    location: str  # the member's usual service centre
    steps: tuple[Step, ...]


def _basket(rng: random.Random, reason: str, month: int, prices: float) -> list[Line]:
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
        product = CATALOGUE[sku]
        # Brands and sizes differ: goods vary in price a little, labour follows the price list.
        brand = rng.uniform(0.9, 1.15) if not sku.startswith("SRV-") else 1.0
        lines.append(Line(product, quantity, max(10, round(product.price * prices * brand / 10) * 10)))
    return lines


def history_of(subject: Subject, seed: int, now: datetime) -> History:
    """What member `subject` did from enrolment until `now`, in time order; the same seed, member
    and `now` give the same history."""
    rng = _rng(f"history:{subject.index}", seed)
    zone = ZoneInfo(TIMEZONE)
    location = subject.location or _pick(rng, tuple((loc.code, loc.weight) for loc in LOCATIONS))
    prices = _MAKE_PRICES.get(subject.car_make or "", 1.0) * _LOCATION_PRICES.get(location, 1.0)
    gap = rng.choices([days for days, _ in _PROFILES], weights=[w for _, w in _PROFILES])[0]
    end = now - timedelta(hours=1)  # the last visit starts before this
    steps = [Step(subject.enrolled_at, subject.enrolled_at, "welcome")]

    def opening_hours(day: datetime, after: datetime) -> datetime:
        local = day.astimezone(zone)
        at = datetime(local.year, local.month, local.day, 9, tzinfo=zone) + timedelta(minutes=rng.randrange(11 * 60))
        return max(at, after + timedelta(minutes=rng.randint(20, 90)))

    if subject.channel == "pos" and rng.random() < 0.85:  # enrolled at the till, paying for a visit
        at = subject.enrolled_at + timedelta(minutes=rng.randint(5, 40))
    else:
        at = opening_hours(subject.enrolled_at + timedelta(days=rng.expovariate(1 / gap)), subject.enrolled_at)
    visit = 0
    while at < end:
        visit += 1
        month = at.astimezone(zone).month
        reasons = tuple((r, w * _SEASONS.get(r, {}).get(month, 1)) for r, w in _VISITS)
        lines = tuple(_basket(rng, _pick(rng, reasons), month, prices))
        steps.append(Step(at, at + timedelta(minutes=rng.randint(1, 6)), "purchase", visit, lines))
        retail = [line for line in lines if line.product.retail]
        if retail and rng.random() < RETURN_SHARE:
            back = opening_hours(at + timedelta(days=rng.uniform(1, 10)), at)
            steps.append(Step(back, back, "return", visit, (rng.choice(retail),)))
        elif rng.random() < REFUND_SHARE:
            back = opening_hours(at + timedelta(days=rng.uniform(1, 5)), at)
            steps.append(Step(back, back, "refund", visit, refund=rng.choice((300, 500, 1000))))
        if rng.random() < SURVEY_SHARE:
            answered = at + timedelta(hours=rng.uniform(3, 48))
            steps.append(Step(answered, answered, "survey", visit))
        # Car owners come back fairly regularly: a gamma around their usual interval.
        at = opening_hours(at + timedelta(days=max(3.0, rng.gammavariate(3, gap / 3))), at)
    return History(location, tuple(sorted((s for s in steps if s.posted <= now), key=lambda s: s.posted)))


@dataclass
class Tally:
    """What the history did, summed from what the services answered."""

    purchases: int = 0
    returns: int = 0
    surveys: int = 0
    points_earned: int = 0
    points_bonus: int = 0
    points_redeemed: int = 0
    points_reversed: int = 0
    points_restored: int = 0

    def add(self, other: Tally) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _spendable(session: Session, member_id: uuid.UUID, now: datetime) -> int:
    """The points the member could spend now: available, plus pending ones whose hold has passed
    (the purchase releases them before it redeems). Read only: the purchase does the releasing."""
    matured = session.scalar(
        select(func.coalesce(func.sum(PointLot.remaining), 0)).where(
            PointLot.member_id == member_id, PointLot.pending.is_(True), PointLot.available_at <= now
        )
    )
    return ledger.get_account(session, member_id).available + int(matured or 0)


def live(session: Session, actor: Actor, subject: Subject, history: History, seed: int, secret: bytes) -> Tally:
    """Post one member's history through the services, each step with the clock at its time."""
    tally = Tally()
    wallet = _rng(f"wallet:{subject.index}", seed)  # whether they pay with points
    point_value = program_service.get(session).point_value_minor
    bought: dict[int, TransactionOut] = {}
    for step in history.steps:
        ref = f"demo-{subject.number}-{step.visit:03d}"
        with clock.frozen(step.posted):
            if step.kind == "welcome":
                member = members.get(session, subject.id)
                account = ledger.lock_account(session, member.id)
                when = engine.Occasion(at=step.at, channel=subject.channel, location=subject.location)
                tally.points_bonus += bonuses.award(session, member, account, "welcome", when, actor).points
            elif step.kind == "purchase":
                total = sum(line.quantity * line.unit_price for line in step.lines) * 100
                redeem = 0
                spendable = _spendable(session, subject.id, step.posted)
                if spendable >= REDEEM_FROM and wallet.random() < REDEEM_SHARE:
                    redeem = min(spendable, total // 2 // point_value) // 50 * 50
                by, value = subject.identify
                out = transactions.post(
                    session,
                    actor,
                    TransactionIn.model_validate(
                        {
                            "external_id": ref,
                            by: value,
                            "occurred_at": step.at,
                            "location": history.location,
                            "channel": "pos",
                            "items": [
                                ItemIn(
                                    sku=line.product.sku,
                                    name=line.product.name,
                                    category=line.product.category,
                                    quantity=Decimal(line.quantity),
                                    unit_price=Decimal(line.unit_price),
                                )
                                for line in step.lines
                            ],
                            "redeem_points": redeem,
                        }
                    ),
                    secret,
                )
                bought[step.visit] = out
                tally.purchases += 1
                tally.points_earned += out.points_earned
                tally.points_redeemed += out.points_redeemed
            elif step.kind in ("return", "refund"):
                purchase = bought[step.visit]
                if step.kind == "return":
                    line = step.lines[0]
                    body = ReturnIn(
                        external_id=f"{ref}-return",
                        items=[ReturnItemIn(sku=line.product.sku, quantity=Decimal(line.quantity))],
                    )
                else:
                    amount = min(Decimal(step.refund), purchase.amount_due)
                    if amount <= 0:  # paid wholly with points: nothing to refund in money
                        continue
                    body = ReturnIn(external_id=f"{ref}-refund", amount=amount)
                back = transactions.process_return(session, actor, purchase.id, body)
                tally.returns += 1
                tally.points_reversed += back.points_reversed
                tally.points_restored += back.points_restored
            else:  # survey
                answer = events.record(
                    session,
                    actor,
                    EventIn(
                        external_id=f"{ref}-survey", member_id=subject.id, type="survey_answered", occurred_at=step.at
                    ),
                )
                tally.surveys += 1
                tally.points_bonus += answer.points_earned
    return tally


def _history(
    db: Database,
    actor: Actor,
    subjects: list[Subject],
    *,
    seed: int,
    now: datetime,
    secret: bytes,
    on_progress: Callable[[int], None] | None,
) -> Tally:
    """Every subject's history up to `now`, one transaction per member."""
    tally = Tally()
    for subject in subjects:
        history = history_of(subject, seed, now)
        # Counted from what the transaction returns: Database.write may run it more than once.
        tally.add(db.write(partial(live, actor=actor, subject=subject, history=history, seed=seed, secret=secret)))
        if on_progress is not None:
            on_progress(1)
    return tally


def _run_job(db: Database, actor: Actor, name: str, as_of: datetime) -> dict[str, Any]:
    """A scheduled job, run and recorded as `patron jobs run` does."""
    out = jobs.run(db, name, as_of)
    db.write(lambda s: audit.record(s, actor, "job.run", "job", name, {"as_of": as_of.isoformat(), **out}))
    return out


def tier_counts(session: Session) -> tuple[tuple[str, int], ...]:
    counts = dict(session.execute(select(Member.tier_code, func.count()).group_by(Member.tier_code)).all())
    return tuple((t.name, int(counts.get(t.code, 0))) for t in tiers.ladder(session))


def run(
    db: Database,
    actor: Actor,
    *,
    count: int = DEFAULT_MEMBERS,
    seed: int = DEFAULT_SEED,
    secret: bytes,
    batch_size: int = BATCH_SIZE,
    on_progress: Callable[[int], None] | None = None,
) -> DemoResult:
    """Fill an empty programme with the demo; see the module docstring for the steps.

    `on_progress` is told of members as they are done, `count` in all: a member without a history
    once it is inserted, a member with one once its history is posted."""
    now = clock.now()
    result = DemoResult()
    with_history = count if count <= HISTORY_ALL_UP_TO else HISTORY_MEMBERS

    def configure(session: Session) -> tuple[Plan, str, str]:
        existing = member_count(session)
        if existing:
            raise Conflict(f"The database already has {existing} members; the demo fills an empty programme only")
        _configure_programme(session, actor)
        program = program_service.get(session)
        return plan(count, seed, now, program.card_prefix), program.rules_version, tiers.base_tier(session).code

    p, rules_version, base_tier = db.write(configure)

    # Members of the plan's special cases, kept as they pass by: (id, card number).
    special = p.blocked_members | p.blocked_cards | p.replaced_cards | set(p.bank_cards)
    kept: dict[int, tuple[uuid.UUID, str | None]] = {}
    subjects: list[Subject] = []

    def insert(batch: list[NewMember]) -> None:
        db.write(lambda s: insert_members(s, batch, rules_version=rules_version, base_tier=base_tier))

    index = 0
    for batch in in_background(batched(members_of(p), batch_size)):
        insert(batch)
        for m in batch:
            assert m.id is not None and m.number is not None and m.enrolled_at is not None  # insert_members gave them
            if index in special:
                kept[index] = (m.id, m.card)
            if result.sample is None and m.phone and m.card and index not in special:
                result.sample = (f"{m.first_name} {m.last_name}", m.phone, m.card)
            if index < with_history:
                identify = ("card", m.card) if m.card else ("phone", m.phone) if m.phone else ("member_id", str(m.id))
                subjects.append(
                    Subject(
                        index,
                        m.id,
                        m.number,
                        identify,
                        m.enrolled_at,
                        m.channel,
                        m.location,
                        m.attributes.get("car_make"),
                    )
                )
            index += 1
        result.members += len(batch)
        result.cards += sum(1 for m in batch if m.card)
        if on_progress is not None:
            without_history = index - max(index - len(batch), with_history)
            if without_history > 0:
                on_progress(without_history)

    tally = _history(db, actor, subjects, seed=seed, now=now, secret=secret, on_progress=on_progress)
    result.history_members = len(subjects)
    for name in Tally.__dataclass_fields__:
        setattr(result, name, getattr(tally, name))
    result.points_released = _run_job(db, actor, "release-pending", now)["points"]
    result.points_expired = _run_job(db, actor, "expire-points", now)["points"]
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
