"""Email over real SMTP: an aiosmtpd server on 127.0.0.1 that each test starts, no mocks."""

from __future__ import annotations

import email
import email.policy
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select

from patron.config import ConfigError, Settings
from patron.db import Database
from patron.kit import clock
from patron.mail import service as mail
from patron.mail.models import MailAttempt, MailMessage
from tests.helpers import counts
from tests.live_server import free_port


class Inbox:
    """An aiosmtpd handler that keeps what it receives; `refuse` makes it answer DATA with that reply."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], EmailMessage]] = []
        self.refuse: str | None = None
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        if self.refuse:
            return self.refuse
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with self.lock:
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))  # type: ignore[arg-type]
        return "250 Message accepted"


class SmtpServer:
    def __init__(self, **kwargs: Any) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def with_settings(db: Database, **changes: Any) -> Database:
    return Database(db.settings.model_copy(update=changes))


@pytest.fixture
def smtp_db(db: Database, smtp: SmtpServer) -> Iterator[Database]:
    database = with_settings(db, smtp_url=f"smtp://127.0.0.1:{smtp.port}", mail_from="club@northwind.example")
    try:
        yield database
    finally:
        database.dispose()


def queue(db: Database, **fields: Any) -> Any:
    values = {
        "to": "anna@example.com",
        "kind": "test",
        "language": "ru",
        "subject": "Ваш код входа",
        "text": "Код: 123456",
        "html": "<p>Код: <b>123456</b></p>",
    }
    values.update(fields)
    return db.write(lambda s: mail.queue(s, **values).id)


def message(db: Database, message_id: Any) -> MailMessage:
    found = db.read(lambda s: s.get(MailMessage, message_id))
    assert found is not None
    return found


def attempts(db: Database, message_id: Any) -> list[tuple[int, str, str | None]]:
    return db.read(
        lambda s: [
            (a.number, a.outcome, a.error)
            for a in s.scalars(
                select(MailAttempt).where(MailAttempt.message_id == message_id).order_by(MailAttempt.number)
            )
        ]
    )


def test_parse_smtp_url() -> None:
    assert mail.parse_smtp_url("smtp://mail.example:2525") == mail.SmtpTarget(
        "mail.example", 2525, implicit_tls=False, starttls=True, username=None, password=None
    )
    assert mail.parse_smtp_url("smtps://club%40example.com:p%3Ass@mail.example") == mail.SmtpTarget(
        "mail.example", 465, implicit_tls=True, starttls=False, username="club@example.com", password="p:ss"
    )
    assert mail.parse_smtp_url("smtp://relay?starttls=no") == mail.SmtpTarget(
        "relay", 25, implicit_tls=False, starttls=False, username=None, password=None
    )
    for bad in ("http://mail.example", "smtp://", "smtp://host:port"):
        with pytest.raises(ConfigError):
            mail.parse_smtp_url(bad)


def test_nothing_is_queued_by_a_transaction_that_rolls_back(db: Database) -> None:
    before = counts(db)

    def work(session: Any) -> None:
        mail.queue(session, to="anna@example.com", kind="test", language="en", subject="Hi", text="Hello")
        raise RuntimeError("the business step failed after queueing")

    with pytest.raises(RuntimeError):
        db.write(work)
    assert counts(db) == before


def test_delivered_over_smtp_in_the_message_language(smtp_db: Database, smtp: SmtpServer) -> None:
    message_id = queue(smtp_db)
    assert message(smtp_db, message_id).status == "queued"
    assert smtp.inbox.received == []  # queueing sends nothing

    report = mail.deliver(smtp_db, [message_id])

    assert (report.sent, report.retrying, report.failed) == (1, 0, 0)
    [(sender, rcpts, received)] = smtp.inbox.received
    assert sender == "club@northwind.example"
    assert rcpts == ["anna@example.com"]
    assert received["To"] == "anna@example.com"
    assert received["From"] == "Loyalty programme <club@northwind.example>"
    assert received["Subject"] == "Ваш код входа"
    assert received["Auto-Submitted"] == "auto-generated"
    assert received["Message-ID"].endswith(f".{message_id.hex}@northwind.example>")
    assert received.get_body(("plain",)).get_content().strip() == "Код: 123456"  # type: ignore[union-attr]
    assert received.get_body(("html",)).get_content().strip() == "<p>Код: <b>123456</b></p>"  # type: ignore[union-attr]
    stored = message(smtp_db, message_id)
    assert (stored.status, stored.attempts, stored.last_error) == ("sent", 1, None)
    assert stored.sent_at is not None
    assert stored.body_text == "Код: 123456"  # not sensitive: kept for the delivery log
    assert attempts(smtp_db, message_id) == [(1, "sent", None)]

    # Delivered once: asking again sends nothing more.
    assert mail.deliver(smtp_db, [message_id]).as_dict() == {"sent": 0, "mailbox": 0, "retrying": 0, "failed": 0}
    assert mail.deliver_pending(smtp_db) == {"sent": 0, "mailbox": 0, "retrying": 0, "failed": 0}
    assert len(smtp.inbox.received) == 1


def test_sensitive_body_is_blanked_once_delivered(smtp_db: Database, smtp: SmtpServer) -> None:
    message_id = queue(smtp_db, sensitive=True)
    assert mail.deliver_pending(smtp_db) == {"sent": 1, "mailbox": 0, "retrying": 0, "failed": 0}
    assert "123456" in smtp.inbox.received[0][2].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    stored = message(smtp_db, message_id)
    assert (stored.status, stored.body_text, stored.body_html, stored.subject) == ("sent", "", None, "Ваш код входа")


def test_development_without_smtp_lands_in_the_mailbox(db: Database) -> None:
    assert db.settings.smtp_url is None and db.settings.env == "development"
    message_id = queue(db, sensitive=True)
    assert mail.deliver_pending(db) == {"sent": 0, "mailbox": 1, "retrying": 0, "failed": 0}
    stored = message(db, message_id)
    # The development mailbox is where a developer reads the code: the body stays.
    assert (stored.status, stored.attempts, stored.body_text) == ("mailbox", 1, "Код: 123456")
    assert attempts(db, message_id) == [(1, "mailbox", None)]
    rows, cursor = db.read(lambda s: mail.mailbox(s, limit=10, cursor=None))
    assert [r.id for r in rows] == [message_id] and cursor is None


def test_production_without_smtp_keeps_retrying(db: Database) -> None:
    prod = with_settings(db, env="production")
    try:
        message_id = queue(prod)
        assert mail.deliver_pending(prod) == {"sent": 0, "mailbox": 0, "retrying": 1, "failed": 0}
        stored = message(prod, message_id)
        assert (stored.status, stored.last_error) == ("queued", "PATRON_SMTP_URL is not set")
    finally:
        prod.dispose()


def test_server_down_then_retried_after_the_back_off(db: Database) -> None:
    port = free_port()  # nothing listens here yet
    database = with_settings(db, smtp_url=f"smtp://127.0.0.1:{port}")
    try:
        start = clock.now()
        with clock.frozen(start):
            message_id = queue(database)
            assert mail.deliver(database, [message_id]).retrying == 1
        stored = message(database, message_id)
        assert stored.status == "queued"
        assert stored.attempts == 1
        assert stored.next_attempt_at == start + timedelta(minutes=1)
        assert stored.last_error is not None and stored.last_error.startswith("ConnectionRefusedError")
        [(number, outcome, error)] = attempts(database, message_id)
        assert (number, outcome) == (1, "error") and error == stored.last_error

        with clock.frozen(start + timedelta(seconds=59)):  # not due yet: nothing is tried
            assert mail.deliver_pending(database) == {"sent": 0, "mailbox": 0, "retrying": 0, "failed": 0}
        assert len(attempts(database, message_id)) == 1

        with SmtpServer() as server:
            moved = with_settings(db, smtp_url=f"smtp://127.0.0.1:{server.port}")
            try:
                with clock.frozen(start + timedelta(minutes=1)):
                    assert mail.deliver_pending(moved) == {"sent": 1, "mailbox": 0, "retrying": 0, "failed": 0}
            finally:
                moved.dispose()
            assert len(server.inbox.received) == 1
        stored = message(database, message_id)
        assert (stored.status, stored.attempts, stored.last_error) == ("sent", 2, None)
        assert [(n, o) for n, o, _ in attempts(database, message_id)] == [(1, "error"), (2, "sent")]
    finally:
        database.dispose()


def test_temporary_refusal_retries_and_permanent_refusal_fails(smtp_db: Database, smtp: SmtpServer) -> None:
    smtp.inbox.refuse = "451 4.3.0 Try again later"
    first = queue(smtp_db)
    assert mail.deliver_pending(smtp_db) == {"sent": 0, "mailbox": 0, "retrying": 1, "failed": 0}
    stored = message(smtp_db, first)
    assert (stored.status, stored.last_error) == ("queued", "SMTP 451: 4.3.0 Try again later")

    smtp.inbox.refuse = "550 5.1.1 Mailbox unavailable"
    second = queue(smtp_db)
    assert mail.deliver(smtp_db, [second]).failed == 1
    stored = message(smtp_db, second)
    assert (stored.status, stored.attempts, stored.last_error) == ("failed", 1, "SMTP 550: 5.1.1 Mailbox unavailable")
    assert smtp.inbox.received == []


def test_gives_up_after_the_last_attempt(db: Database) -> None:
    database = with_settings(db, smtp_url=f"smtp://127.0.0.1:{free_port()}")
    try:
        at = clock.now()
        with clock.frozen(at):
            message_id = queue(database)
        for attempt in range(1, mail.MAX_ATTEMPTS + 1):
            with clock.frozen(at):
                result = mail.deliver_pending(database)
            expected = "failed" if attempt == mail.MAX_ATTEMPTS else "retrying"
            assert result[expected] == 1, (attempt, result)
            stored = message(database, message_id)
            assert stored.attempts == attempt
            if attempt < mail.MAX_ATTEMPTS:
                assert stored.next_attempt_at == at + mail.BACKOFF[attempt - 1]
                at = stored.next_attempt_at
        assert message(database, message_id).status == "failed"
        assert [n for n, _, _ in attempts(database, message_id)] == list(range(1, mail.MAX_ATTEMPTS + 1))
        with clock.frozen(at + timedelta(days=30)):
            assert mail.deliver_pending(database)["failed"] == 0  # a failed message is never tried again
    finally:
        database.dispose()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_login(db: Database) -> None:
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"club@example.com", b"s3cret:pw")
        return AuthResult(success=ok, handled=False)

    # PLAIN only: enough to prove the credentials travel (the test server has no TLS, hence the warning).
    with SmtpServer(
        authenticator=authenticator, auth_required=True, auth_require_tls=False, auth_exclude_mechanism=["LOGIN"]
    ) as server:
        good = with_settings(db, smtp_url=f"smtp://club%40example.com:s3cret%3Apw@127.0.0.1:{server.port}")
        bad = with_settings(db, smtp_url=f"smtp://club%40example.com:wrong@127.0.0.1:{server.port}")
        try:
            refused = queue(bad)
            assert mail.deliver(bad, [refused]).retrying == 1  # a wrong password is the operator's to fix: retry
            assert message(bad, refused).last_error == "SMTP 535: 5.7.8 Authentication credentials invalid"
            accepted = queue(good)
            assert mail.deliver(good, [accepted]).sent == 1
            assert [r for _, r, _ in server.inbox.received] == [["anna@example.com"]]
        finally:
            good.dispose()
            bad.dispose()


def test_smtps_with_implicit_tls(db: Database, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(  # noqa: S603 - a throwaway self-signed certificate for 127.0.0.1
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    with SmtpServer(ssl_context=server_context) as server:
        database = with_settings(db, smtp_url=f"smtps://127.0.0.1:{server.port}")
        try:
            message_id = queue(database)
            # A client that does not trust the certificate refuses to talk: nothing goes out in clear.
            assert mail.deliver(database, [message_id]).retrying == 1
            assert "CERTIFICATE_VERIFY_FAILED" in (message(database, message_id).last_error or "")
            with clock.frozen(clock.now() + timedelta(minutes=2)):
                assert mail.deliver_pending(database, ssl_context=client_context)["sent"] == 1
            assert len(server.inbox.received) == 1
        finally:
            database.dispose()


def test_concurrent_workers_send_each_message_once(smtp_db: Database, smtp: SmtpServer) -> None:
    ids = [queue(smtp_db, to=f"member{i}@example.com") for i in range(12)]
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(mail.deliver_pending(smtp_db))
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sum(r["sent"] for r in results) == 12
    assert sorted(r[0] for _, r, _ in smtp.inbox.received) == sorted(f"member{i}@example.com" for i in range(12))
    assert {message(smtp_db, i).status for i in ids} == {"sent"}
    assert all(len(attempts(smtp_db, i)) == 1 for i in ids)


def test_settings_default_sender() -> None:
    assert Settings().mail_from == "no-reply@patron.localhost"
