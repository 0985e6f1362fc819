"""CSV import and export of members, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import shutil
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from patron.access.principal import SYSTEM
from patron.audit.models import AuditEntry
from patron.cards import service as cards
from patron.cards.models import Card
from patron.db import Database
from patron.errors import ValidationFailed
from patron.kit.luhn import with_check_digit
from patron.ledger.models import PointAccount
from patron.members import exporting, importing
from patron.members import service as members
from patron.members.models import ConsentEvent, Member
from patron.members.schemas import ConsentsIn, MemberCreate
from tests.conftest import TEST_SECRET, settings_for

HEADER = "first_name,last_name,email,phone,birth_date,language,card,marketing_email,marketing_sms,marketing_push"


def card(n: int) -> str:
    return with_check_digit(f"78009{n:010d}")


def bad_check_digit(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


def run_import(db: Database, text: str, **kw: object) -> importing.ImportReport:
    return importing.import_members(db, SYSTEM, importing.MemberCsv(io.StringIO(text)), **kw)  # type: ignore[arg-type]


def reasons(report: importing.ImportReport) -> dict[int, str]:
    return {r.line: r.reason for r in report.refusals}


def count(db: Database, model: type) -> int:
    return db.read(lambda s: int(s.scalar(select(func.count()).select_from(model)) or 0))


def by_email(db: Database, email: str) -> Member:
    return db.read(lambda s: s.scalars(select(Member).where(Member.email == email)).one())


@pytest.fixture
def fresh_db(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A second fresh, migrated database of the same kind as `db`."""
    if db_url.startswith("sqlite"):
        path = tmp_path / "fresh.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        database = Database(settings_for(f"sqlite:///{path}"))
        yield database
        database.dispose()
        return
    admin = make_url(request.getfixturevalue("pg_admin_url"))
    name = f"fresh_{uuid.uuid4().hex[:12]}"

    def admin_sql(sql: str) -> None:
        with psycopg.connect(
            host=admin.host, port=admin.port, user=admin.username, dbname=admin.database, autocommit=True
        ) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    admin_sql(f"CREATE DATABASE {name} TEMPLATE {request.getfixturevalue('pg_template')}")
    database = Database(settings_for(admin.set(database=name).render_as_string(hide_password=False)))
    try:
        yield database
    finally:
        database.dispose()
        admin_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_good_rows_are_kept_and_bad_rows_reported_with_line_and_reason(db):
    good = card(1)
    text = "\n".join(
        [
            HEADER + ",attribute.car_make",
            f"Анна,Иванова,Anna@Example.COM,8 (916) 111-22-33,1990-05-01,ru,{good},yes,no,1,Kia",  # 2
            ",Петров,petrov@example.com,+79161112234,,ru,,,,,",  # 3
            "Олег,Петров,oleg@@example.com,+79161112235,,ru,,,,,",  # 4
            "Олег,Сидоров,sidorov@example.com,12345,,ru,,,,,",  # 5
            "Анна,Двойник,ANNA@example.com,+79161112236,,ru,,,,,",  # 6
            f"Иван,Картов,kartov@example.com,,,ru,{bad_check_digit(card(2))},,,,",  # 7
            f"Иван,Повтор,povtor@example.com,,,ru,{good},,,,",  # 8
            "Вера,Будущая,future@example.com,,2999-01-01,ru,,,,,",  # 9
            "Jean,Dupont,jean@example.com,,,fr,,,,,",  # 10
            "Nina,Maybe,nina@example.com,,,en,,,maybe,,",  # 11
            "Без,Контактов,,,,ru,,,,,",  # 12
            "",  # 13: a blank line is no row
            "James,Smith,,+44 7700 900123,01/02/1980,en,,,,,",  # 14
            ',Multi,"x@@y",,,ru,,,,,"a',  # 15, a quoted field running over two lines
            'b"',  # 16
            "Zhang,Wei,zhang@example.com,+86 138 0013 8000,1985-12-31,zh,,true,true,false,",  # 17
        ]
    )
    report = run_import(db, text + "\n")

    assert report.imported == 2
    assert report.refused == 12
    got = reasons(report)
    assert got[3] == "missing first_name"
    assert got[4].startswith("bad email: ")
    assert got[5] == "bad phone: not a valid phone number"
    assert got[6] == "duplicate within the file: email also on line 2"
    assert got[7] == "bad card: not a valid card number (check digit does not match)"
    assert got[8] == "duplicate within the file: card also on line 2"
    assert got[9] == "bad birth_date: birth_date must be a real date in the past"
    assert got[10] == "bad language: 'fr' is not one of en, ru, zh"
    assert got[11] == "bad marketing_sms: 'maybe' is not true/false, yes/no or 1/0"
    assert got[12] == "needs an email or a phone"
    assert got[14] == "bad birth_date: '01/02/1980' is not a date as YYYY-MM-DD"
    assert got[15].startswith("missing first_name; bad email: ")
    assert sorted(got) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15]
    refused_row = next(r for r in report.refusals if r.line == 15)
    assert refused_row.values[-1] == "a\nb"

    anna = by_email(db, "anna@example.com")
    assert (anna.first_name, anna.last_name, anna.phone, anna.birth_date) == (
        "Анна",
        "Иванова",
        "+79161112233",
        date(1990, 5, 1),
    )
    assert (anna.language, anna.channel, anna.status, anna.tier_code) == ("ru", "import", "active", "member")
    assert (anna.marketing_email, anna.marketing_sms, anna.marketing_push) == (True, False, True)
    assert anna.attributes == {"car_make": "Kia"}
    assert len(anna.number) == 10
    zhang = by_email(db, "zhang@example.com")
    assert zhang.phone == "+8613800138000"
    assert zhang.attributes == {}
    assert count(db, Member) == 2


def test_consents_accounts_cards_and_one_audit_entry(db):
    number = card(7)
    text = HEADER + f"\nАнна,Иванова,anna@example.com,+79161112233,,ru,{number},true,false,true\n"
    text += "Пётр,Смирнов,,+79161112234,,ru,,,,\n"
    report = run_import(db, text)
    assert (report.imported, report.refused) == (2, 0)

    anna = by_email(db, "anna@example.com")
    assert anna.rules_version == "1"
    events = db.read(
        lambda s: sorted(
            (e.kind, e.granted, e.rules_version, e.channel, e.recorded_at == anna.rules_accepted_at)
            for e in s.scalars(select(ConsentEvent).where(ConsentEvent.member_id == anna.id))
        )
    )
    assert events == [
        ("marketing_email", True, None, "import", True),
        ("marketing_push", True, None, "import", True),
        ("program_rules", True, "1", "import", True),
    ]
    assert count(db, ConsentEvent) == 4  # the second member consented to the rules only
    accounts = db.read(lambda s: [(a.available, a.pending) for a in s.scalars(select(PointAccount))])
    assert accounts == [(0, 0), (0, 0)]
    held = db.read(lambda s: s.scalars(select(Card)).one())
    assert (held.number, held.kind, held.status, held.member_id) == (number, "loyalty", "active", anna.id)
    audit = db.read(lambda s: s.scalars(select(AuditEntry).where(AuditEntry.action == "member.import")).all())
    assert [(a.details["imported"], a.details["refused"]) for a in audit] == [(2, 0)]
    assert count(db, AuditEntry) == 1  # no entry per row


@pytest.mark.parametrize("processes", [0, 1], ids=["thread", "worker-process"])
def test_clashes_with_the_database_and_across_batches(db, processes):
    def seed(s):
        old = members.enrol(
            s,
            SYSTEM,
            MemberCreate(
                first_name="Old",
                last_name="Member",
                email="old@example.com",
                phone="+79160000001",
                consents=ConsentsIn(program_rules=True),
            ),
        )
        cards.add_loyalty_card(s, SYSTEM, old.id, card(10))
        free = [c.number for c in cards.issue_batch(s, SYSTEM, 2, "7801")]
        cards.block(s, SYSTEM, free[1], "lost")
        return free

    free, blocked = db.write(seed)
    text = "\n".join(
        [
            HEADER,
            "A,One,OLD@example.com,,,en,,,,",  # 2
            "B,Two,b@example.com,8 916 000-00-01,,en,,,,",  # 3
            f"C,Three,c@example.com,,,en,{card(10)},,,",  # 4
            f"D,Four,d@example.com,,,en,{free},,,",  # 5
            f"E,Five,e@example.com,,,en,{blocked},,,",  # 6
            "F,Six,f@example.com,+79160000009,,en,,,,",  # 7
            "G,Seven,g@example.com,+79160000009,,en,,,,",  # 8: same phone as line 7, next batch
            "H,Eight,f@example.com,,,en,,,,",  # 9: same email as line 7, later batch
            f"I,Nine,i@example.com,,,en,{free},,,",  # 10: the card line 5 took
        ]
    )
    report = run_import(db, text + "\n", batch_size=2, processes=processes)
    assert reasons(report) == {
        2: "already a member (email)",
        3: "already a member (phone)",
        4: "card in use by another member",
        6: "card is blocked",
        8: "duplicate within the file: phone on an earlier row",
        9: "duplicate within the file: email on an earlier row",
        10: "duplicate within the file: card on an earlier row",
    }
    assert report.imported == 2
    d = by_email(db, "d@example.com")
    taken = db.read(lambda s: s.scalars(select(Card).where(Card.number == free)).one())
    assert (taken.status, taken.member_id) == ("active", d.id)

    # The same file again: everything is now in the database, and it says so.
    again = run_import(db, text + "\n", batch_size=2, processes=processes)
    assert again.imported == 0
    assert reasons(again)[7] == "already a member (email); already a member (phone)"
    assert reasons(again)[5] == "already a member (email); card in use by another member"
    assert count(db, Member) == 3


def test_refused_rows_file_can_be_fixed_and_imported_again(db, tmp_path):
    text = HEADER + "\nA,One,a@example.com,,,en,,,,\nB,Two,not-an-email,,,en,,,,\n"
    out = io.StringIO()
    csvfile = importing.MemberCsv(io.StringIO(text))
    importing.import_members(db, SYSTEM, csvfile, on_refused=importing.RefusalWriter(out, csvfile))
    lines = out.getvalue().splitlines()
    assert lines[0] == "line,reason," + HEADER
    assert lines[1].startswith("3,bad email: ")
    fixed = out.getvalue().replace("not-an-email", "b@example.com")
    report = run_import(db, fixed)
    assert (report.imported, report.refused) == (1, 0)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("first_name,last_name,email,fone", "unknown column 'fone'"),
        ("first_name,email", "the file needs the column(s) last_name"),
        ("first_name,last_name,birth_date", "the file needs an email or a phone column (or both)"),
        ("first_name,last_name,email,Email", "column 'Email' appears twice"),
        ("first_name,last_name,email,attribute.car make", "column 'attribute.car make'"),
        ("", "the file is empty"),
    ],
)
def test_a_bad_header_refuses_the_file(header, message):
    with pytest.raises(ValidationFailed) as caught:
        importing.MemberCsv(io.StringIO(header + "\n"))
    assert message in caught.value.detail


def test_semicolons_and_a_byte_order_mark(db):
    raw = "\ufefffirst_name;last_name;email\nАнна;Иванова;anna@example.com\n".encode()
    source = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig", newline="")
    report = importing.import_members(db, SYSTEM, importing.MemberCsv(source))
    assert report.imported == 1


@pytest.mark.parametrize(
    "email",
    [
        "Ivan.Petrov@Example.COM",
        "a+tag@sub.example.co.uk",
        "x@xn--80akhbyknj4f.xn--p1ai",
        "имя@пример.рф",
        "ivan@localhost",
        "ivan@example",
        "ivan@example..com",
        ".ivan@example.com",
        "ivan.@example.com",
        '"quoted"@example.com',
        "Ivan <ivan@example.com>",
        "a" * 64 + "@example.com",
        "a@" + "b" * 250 + ".com",
        "ivan@123.123.123.123",
        "ivan@example.invalid",
        "postmaster@EXAMPLE.com",
    ],
)
def test_fast_email_check_answers_as_the_members_service(email):
    try:
        expected: str | None = members.normalize_email(email)
    except ValidationFailed as exc:
        expected = "bad email: " + exc.detail
    try:
        got = importing._email(email)
    except importing.RowRefused as exc:
        got = exc.reason
    assert got == expected


def test_export_then_import_into_a_fresh_database_round_trips(db, fresh_db):
    text = "\n".join(
        [
            "number,first_name,last_name,email,phone,birth_date,language,card,marketing_email,marketing_sms,"
            "marketing_push,status,tier,enrolled_at,attribute.car_make,attribute.car_model",
            f"1000000009,Анна,Иванова,anna@example.com,+79161112233,1990-05-01,ru,{card(1)},true,false,true,"
            "active,member,2026-05-01T10:00:00+03:00,Kia,Rio",
            ',Ivan,"Smith, Jr.",,+79161112234,,en,,false,true,false,blocked,,,Lada,"Vesta ""Cross"""',
            "1000000017,王,伟,wei@example.com,,,zh,,,,,,,2026-06-01T08:30:15.123456+00:00,,",
        ]
    )
    report = run_import(db, text + "\n")
    assert (report.imported, report.refused) == (3, 0)

    first = io.StringIO()
    written = db.read(lambda s: exporting.write_members(s, first))
    assert written == 3
    exported = first.getvalue()
    lines = exported.splitlines()
    assert lines[0] == ",".join([*importing.COLUMNS, "attribute.car_make", "attribute.car_model"])
    assert lines[1] == (
        f"1000000009,Анна,Иванова,anna@example.com,+79161112233,1990-05-01,ru,{card(1)},true,false,true,"
        "active,member,2026-05-01T07:00:00+00:00,0,Kia,Rio"
    )
    assert ",blocked,member," in lines[2] and '"Vesta ""Cross"""' in lines[2]

    again = run_import(fresh_db, exported)
    assert (again.imported, again.refused, again.with_points) == (3, 0, 0)
    second = io.StringIO()
    fresh_db.read(lambda s: exporting.write_members(s, second))
    assert second.getvalue() == exported


def test_export_streams_in_batches_with_progress(db):
    rows = [f"M,N{i},m{i}@example.com,,,en,{card(100 + i) if i % 2 else ''},,," for i in range(25)]
    run_import(db, HEADER + "\n" + "\n".join(rows) + "\n")
    steps: list[int] = []
    out = io.StringIO()
    assert db.read(lambda s: exporting.write_members(s, out, batch_size=10, on_progress=steps.append)) == 25
    assert steps == [10, 10, 5]
    body = out.getvalue().splitlines()[1:]
    assert sum(1 for line in body if card(101) in line) == 1
    assert db.read(exporting.attribute_names) == []


def test_cli_import_and_export(db, db_url, tmp_path):
    from patron.cli import app

    source = tmp_path / "members.csv"
    source.write_text(HEADER + "\nA,One,a@example.com,,,en,,,,\nB,Two,b@@example.com,,,en,,,,\n", encoding="utf-8")
    errors = tmp_path / "refused.csv"
    env = {"PATRON_DATABASE_URL": db_url, "PATRON_SECRET": TEST_SECRET}
    runner = CliRunner()

    result = runner.invoke(app, ["import", "members", str(source), "--errors", str(errors)], env=env)
    assert result.exit_code == 1, result.output  # a row was refused
    assert "Imported 1 members, refused 1." in result.stdout
    assert "line 3: bad email" in result.stdout
    assert errors.read_text(encoding="utf-8").splitlines()[1].startswith("3,bad email")

    result = runner.invoke(app, ["export", "members"], env=env)
    assert result.exit_code == 0, result.output
    exported = result.stdout.splitlines()
    assert exported[0].startswith("number,first_name,last_name,email")
    assert len(exported) == 2 and ",a@example.com," in exported[1]

    bad = tmp_path / "bad.csv"
    bad.write_text("first_name,surname\n", encoding="utf-8")
    result = runner.invoke(app, ["import", "members", str(bad)], env=env)
    assert result.exit_code == 1
    assert "unknown column 'surname'" in result.output


def test_in_background_hands_over_items_and_errors():
    assert list(importing.in_background(iter(range(10)), ahead=2)) == list(range(10))

    def failing():
        yield 1
        raise ValueError("broken")

    failed = importing.in_background(failing())
    assert next(failed) == 1
    with pytest.raises(ValueError, match="broken"):
        next(failed)

    closed = []

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.append(True)

    stream = importing.in_background(endless())
    assert next(stream) == 0
    stream.close()  # stops the thread and closes the source
    assert closed == [True]


def test_cli_import_refuses_a_file_that_is_not_utf8(db_url, tmp_path):
    from patron.cli import app

    source = tmp_path / "cp1251.csv"
    source.write_bytes((HEADER + "\nАнна,Иванова,anna@example.com,,,ru,,,,\n").encode("cp1251"))
    result = CliRunner().invoke(
        app, ["import", "members", str(source)], env={"PATRON_DATABASE_URL": db_url, "PATRON_SECRET": TEST_SECRET}
    )
    assert result.exit_code == 1
    assert "is not UTF-8 text" in result.output
