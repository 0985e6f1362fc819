"""Email: queued in the caller's transaction, delivered over SMTP after that transaction commits.

`queue` writes the message to the outbox (`mail_messages`) in the caller's transaction, so a
rolled-back transaction sends nothing. `deliver` (called by the request right after its commit)
and `deliver_pending` (called by the worker, which also retries) send what is due:

1. a short write transaction claims each message: one more attempt, and a lease (the message's
   `next_attempt_at` moves past the longest an attempt can take), so a second worker skips it;
2. the SMTP conversation runs with no transaction open (no network while holding locks);
3. a second short transaction records the outcome: sent, or the next attempt after a back-off,
   or failed after the last attempt. Every attempt is a `mail_attempts` row.

A process that dies between 1 and 3 leaves the lease to run out, and the message is tried again:
delivery is at least once. Without PATRON_SMTP_URL, in development, a message is "delivered" to
the development mailbox: it stays in the table with status `mailbox`, for the back office to show.

Logs name messages by id only: addresses and bodies are personal data.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.config import ConfigError, Settings
from patron.db import Database
from patron.errors import NotFound
from patron.kit import clock
from patron.kit.pagination import page
from patron.mail.models import MailAttempt, MailMessage

log = logging.getLogger("patron.mail")

MAX_ATTEMPTS = 6
# The wait after attempt N failed (N = 1..5); the sixth failure is final.
BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1), timedelta(hours=4))
SMTP_TIMEOUT = 20.0
# Longer than any one attempt can take (connect + TLS + send, each bounded by SMTP_TIMEOUT).
LEASE = timedelta(minutes=3)
BATCH = 50


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool  # "auto": upgrade when the server offers it; "never" with ?starttls=no
    username: str | None
    password: str | None


def parse_smtp_url(url: str) -> SmtpTarget:
    """`smtp://[user:pass@]host[:port][?starttls=no]` or `smtps://[user:pass@]host[:port]`."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError("PATRON_SMTP_URL must look like smtp://host:port or smtps://user:password@host:port")
    implicit = parts.scheme == "smtps"
    query = parse_qs(parts.query)
    starttls = not implicit and query.get("starttls", ["auto"])[0].lower() not in ("no", "false", "0", "never")
    try:
        port = parts.port or (465 if implicit else 25)
    except ValueError as exc:
        raise ConfigError("PATRON_SMTP_URL has a port that is not a number") from exc
    return SmtpTarget(
        host=parts.hostname,
        port=port,
        implicit_tls=implicit,
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def queue(
    session: Session,
    *,
    to: str,
    kind: str,
    language: str,
    subject: str,
    text: str,
    html: str | None = None,
    member_id: uuid.UUID | None = None,
    sensitive: bool = False,
) -> MailMessage:
    """Put a message in the outbox, in the caller's transaction; it is due at once."""
    now = clock.now()
    message = MailMessage(
        member_id=member_id,
        kind=kind,
        language=language,
        to_address=to,
        subject=subject[:300],
        body_text=text,
        body_html=html,
        sensitive=sensitive,
        status="queued",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(message)
    session.flush()
    return message


@dataclass
class DeliveryReport:
    sent: int = 0
    mailbox: int = 0
    retrying: int = 0
    failed: int = 0
    ids: list[uuid.UUID] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "mailbox": self.mailbox, "retrying": self.retrying, "failed": self.failed}


@dataclass(frozen=True)
class _Claimed:
    id: uuid.UUID
    attempt: int
    to: str
    subject: str
    text: str
    html: str | None


def _claim(session: Session, now: datetime, ids: Sequence[uuid.UUID] | None, limit: int) -> list[_Claimed]:
    stmt = select(MailMessage).where(MailMessage.status == "queued", MailMessage.next_attempt_at <= now)
    if ids is not None:
        stmt = stmt.where(MailMessage.id.in_(ids))
    # SKIP LOCKED: a second worker takes the next messages instead of waiting for these (PostgreSQL;
    # SQLite's BEGIN IMMEDIATE already lets one writer at a time in).
    stmt = stmt.order_by(MailMessage.next_attempt_at, MailMessage.id).limit(limit).with_for_update(skip_locked=True)
    claimed = []
    for message in session.scalars(stmt):
        message.attempts += 1
        message.next_attempt_at = now + LEASE
        claimed.append(
            _Claimed(
                message.id, message.attempts, message.to_address, message.subject, message.body_text, message.body_html
            )
        )
    return claimed


def _sender(session: Session, settings: Settings) -> str:
    from patron.program import service as program_service

    return formataddr((program_service.get(session).name, settings.mail_from))


def build(message: _Claimed, sender: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.to
    email["Subject"] = message.subject
    email["Date"] = format_datetime(clock.now())
    domain = sender.rsplit("@", 1)[-1].rstrip(">") or "patron.localhost"
    email["Message-ID"] = make_msgid(idstring=message.id.hex, domain=domain)
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(message.text)
    if message.html:
        email.add_alternative(message.html, subtype="html")
    return email


class _Permanent(Exception):
    """The server refused the message for good (a 5xx answer): trying again would not help."""


def send(target: SmtpTarget, email: EmailMessage, *, ssl_context: ssl.SSLContext | None = None) -> None:
    context = ssl_context or ssl.create_default_context()
    smtp: smtplib.SMTP
    if target.implicit_tls:
        smtp = smtplib.SMTP_SSL(target.host, target.port, timeout=SMTP_TIMEOUT, context=context)
    else:
        smtp = smtplib.SMTP(target.host, target.port, timeout=SMTP_TIMEOUT)
    with smtp:
        smtp.ehlo()
        if target.starttls and smtp.has_extn("starttls"):
            smtp.starttls(context=context)
            smtp.ehlo()
        if target.username:
            smtp.login(target.username, target.password or "")
        try:
            smtp.send_message(email)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(code >= 500 for code in codes):
                raise _Permanent(f"recipient refused ({', '.join(map(str, codes))})") from exc
            raise
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                raise _Permanent(_describe(exc)) from exc
            raise


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"SMTP {exc.smtp_code}: {reply}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def _record(
    db: Database, claimed: _Claimed, outcome: str, error: str | None, *, permanent: bool, report: DeliveryReport
) -> None:
    def run(session: Session) -> str:
        message = session.get(MailMessage, claimed.id, with_for_update=True, populate_existing=True)
        assert message is not None
        now = clock.now()
        session.add(
            MailAttempt(message_id=message.id, number=claimed.attempt, attempted_at=now, outcome=outcome, error=error)
        )
        if message.status != "queued" or message.attempts != claimed.attempt:
            return "stale"  # our lease ran out and another attempt took over; it records its own end
        if outcome in ("sent", "mailbox"):
            message.status, message.sent_at, message.last_error = outcome, now, None
            if outcome == "sent" and message.sensitive:
                message.body_text, message.body_html = "", None
            return outcome
        message.last_error = error
        if permanent or message.attempts >= MAX_ATTEMPTS:
            message.status = "failed"
            return "failed"
        message.next_attempt_at = now + BACKOFF[min(message.attempts, len(BACKOFF)) - 1]
        return "retrying"

    result = db.write(run)
    if result != "stale":
        setattr(report, result, getattr(report, result) + 1)
    report.ids.append(claimed.id)


def _attempt(
    db: Database, claimed: _Claimed, sender: str, ssl_context: ssl.SSLContext | None, report: DeliveryReport
) -> None:
    settings = db.settings
    if not settings.smtp_url:
        if settings.env == "development":
            _record(db, claimed, "mailbox", None, permanent=False, report=report)
        else:
            _record(db, claimed, "error", "PATRON_SMTP_URL is not set", permanent=False, report=report)
        return
    try:
        send(parse_smtp_url(settings.smtp_url), build(claimed, sender), ssl_context=ssl_context)
    except _Permanent as exc:
        log.warning(
            "mail %s refused for good on attempt %d: %s", claimed.id, claimed.attempt, type(exc.__cause__).__name__
        )
        _record(db, claimed, "error", str(exc)[:500], permanent=True, report=report)
    except (OSError, smtplib.SMTPException, ConfigError) as exc:
        log.warning("mail %s not delivered on attempt %d: %s", claimed.id, claimed.attempt, type(exc).__name__)
        _record(db, claimed, "error", _describe(exc), permanent=False, report=report)
    else:
        _record(db, claimed, "sent", None, permanent=False, report=report)


def _run(
    db: Database,
    ids: Sequence[uuid.UUID] | None,
    as_of: datetime | None,
    progress: Callable[[int], None] | None,
    limit: int,
    ssl_context: ssl.SSLContext | None,
) -> DeliveryReport:
    report = DeliveryReport()
    done = 0
    while done < limit:

        def claim(session: Session, size: int = min(BATCH, limit - done)) -> tuple[list[_Claimed], str]:
            batch = _claim(session, as_of or clock.now(), ids, size)
            return batch, _sender(session, db.settings) if batch else ""

        batch, sender = db.write(claim)
        if not batch:
            break
        for claimed in batch:
            _attempt(db, claimed, sender, ssl_context, report)
        done += len(batch)
        if progress is not None:
            progress(len(batch))
    return report


def deliver(db: Database, ids: Sequence[uuid.UUID], *, ssl_context: ssl.SSLContext | None = None) -> DeliveryReport:
    """Send these messages now if they are still due: what a request does right after its commit."""
    if not ids:
        return DeliveryReport()
    return _run(db, list(ids), None, None, len(ids), ssl_context)


def deliver_pending(
    db: Database,
    as_of: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    limit: int = 1000,
    ssl_context: ssl.SSLContext | None = None,
) -> dict[str, int]:
    """Send every due message (first attempts and retries), at most `limit` in one call.

    The signature is a job's (`jobs.registry`): the worker calls it on a schedule. Safe to run in
    several processes at once: each message is claimed by one of them."""
    return _run(db, None, as_of, progress, limit, ssl_context).as_dict()


def mailbox(session: Session, *, limit: int, cursor: str | None) -> tuple[Sequence[MailMessage], str | None]:
    """Messages newest first: the development mailbox and the delivery log."""
    return page(session, select(MailMessage), MailMessage.id, limit=limit, cursor=cursor)


def get(session: Session, message_id: uuid.UUID | str) -> MailMessage:
    try:
        key = message_id if isinstance(message_id, uuid.UUID) else uuid.UUID(str(message_id))
    except ValueError as exc:
        raise NotFound("No such message") from exc
    message = session.get(MailMessage, key)
    if message is None:
        raise NotFound("No such message")
    return message


def attempts(session: Session, message_id: uuid.UUID) -> list[MailAttempt]:
    return list(
        session.scalars(select(MailAttempt).where(MailAttempt.message_id == message_id).order_by(MailAttempt.number))
    )


def for_member(session: Session, member_id: uuid.UUID) -> list[MailMessage]:
    return list(session.scalars(select(MailMessage).where(MailMessage.member_id == member_id).order_by(MailMessage.id)))
