"""A demo programme for a newcomer: Northwind Auto Service, a chain of car service centres.

`run` fills an empty database in these steps, each in its own transaction:

1. the programme: name, currency RUB, time zone Europe/Moscow (through program.service);
2. members — Russian, English and a few Chinese names, phones, emails, birth dates, cars as
   custom attributes, enrolment over the last six months at the chain's locations, a loyalty card
   for most — inserted in bulk through `members.importing.insert_members`, so a million demo
   members take as long as importing them;
3. what staff did afterwards, through the same services the API calls (so the audit log shows
   it): a few members blocked, lost cards blocked, worn cards replaced, bank cards linked;
4. API keys: an admin key and a cashier key for the first location.

Everything but the API keys and the database ids follows from the seed and the clock: the same
seed on the same day gives the same members, numbers and cards.

Visit and purchase history is not generated yet: no fake data goes into the ledger. It belongs
between steps 3 and 4 as `_history(db, actor, plan, seed)`, posting purchases through the
transactions service so that rules, tiers and balances come out as real use would make them;
`members_of(plan)` regenerates every demo member (with location and car) from the seed for it.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.access import service as access
from patron.access.principal import Actor
from patron.access.roles import Role
from patron.cards import service as cards
from patron.db import Database
from patron.errors import Conflict
from patron.kit import clock
from patron.kit.ids import DICTATION_ALPHABET
from patron.kit.luhn import with_check_digit
from patron.members import service as members
from patron.members.importing import NewMember, insert_members
from patron.members.models import Member
from patron.program import service as program_service
from patron.program.schemas import ProgramPatch
from patron.tiers import service as tiers

DEFAULT_MEMBERS = 200
DEFAULT_SEED = 1
BATCH_SIZE = 5000
PROGRAM_NAME = "Northwind Auto Service Club"
TIMEZONE = "Europe/Moscow"
ENROLMENT_DAYS = 182
SERVER = "http://127.0.0.1:8000"


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


def _batches(items: Iterator[NewMember], size: int) -> Iterator[list[NewMember]]:
    batch: list[NewMember] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


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
    """Fill an empty programme with the demo; see the module docstring for the steps."""
    now = clock.now()
    result = DemoResult()

    def configure(session: Session) -> tuple[Plan, str, str]:
        existing = member_count(session)
        if existing:
            raise Conflict(f"The database already has {existing} members; the demo fills an empty programme only")
        program_service.update(
            session,
            actor,
            ProgramPatch(name=PROGRAM_NAME, currency="RUB", timezone=TIMEZONE, phone_region="RU"),
        )
        program = program_service.get(session)
        return plan(count, seed, now, program.card_prefix), program.rules_version, tiers.base_tier(session).code

    p, rules_version, base_tier = db.write(configure)

    # Members of the plan's special cases, kept as they pass by: (id, card number).
    special = p.blocked_members | p.blocked_cards | p.replaced_cards | set(p.bank_cards)
    kept: dict[int, tuple[uuid.UUID, str | None]] = {}
    index = 0
    for batch in _batches(members_of(p), batch_size):
        db.write(lambda s, batch=batch: insert_members(s, batch, rules_version=rules_version, base_tier=base_tier))  # type: ignore[misc]
        for m in batch:
            if index in special:
                kept[index] = (m.id, m.card)
            if result.sample is None and m.phone and m.card and index not in special:
                result.sample = (f"{m.first_name} {m.last_name}", m.phone, m.card)
            index += 1
        result.members += len(batch)
        result.cards += sum(1 for m in batch if m.card)
        if on_progress is not None:
            on_progress(len(batch))

    def staff_actions(session: Session) -> None:
        rng = _rng("actions", seed)
        for i in sorted(p.blocked_cards):
            _, number = kept[i]
            if number is not None:
                cards.block(session, actor, number, rng.choice(_CARD_BLOCK_REASONS))
                result.blocked_cards += 1
        for i in sorted(p.replaced_cards):
            _, number = kept[i]
            if number is not None:
                cards.replace(session, actor, number, replacement_card(p, i))
                result.replaced_cards += 1
                result.cards += 1
        for i, pan in zip(p.bank_cards, BANK_TEST_PANS, strict=False):
            cards.add_bank_card(session, actor, kept[i][0], pan, secret)
            result.bank_cards += 1
        for i in sorted(p.blocked_members):
            members.block(session, actor, kept[i][0], rng.choice(_BLOCK_REASONS))
            result.blocked_members += 1

    db.write(staff_actions)

    # Visit and purchase history goes here (see the module docstring).

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
