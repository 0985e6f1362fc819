"""The development mailbox and the delivery log of emails (/admin/mailbox).

Without PATRON_SMTP_URL (development) every email "arrives" here, sign-in codes included, so the
demo can be tried without a mail server. With SMTP configured it is the delivery log: status,
attempts and errors; the bodies of sign-in codes are blanked once a server has taken them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from patron.access.roles import Perm
from patron.mail import service as mail
from patron.web.admin.common import db
from patron.web.i18n import N_
from patron.web.security import Staff, staff_required
from patron.web.templating import MenuItem, add_menu_item, render

router = APIRouter(prefix="/admin")
add_menu_item(MenuItem("mailbox", N_("Mailbox"), "/admin/mailbox", Perm.ADMINISTER, order=95))

PAGE = 50


@router.get("/mailbox")
def mailbox(request: Request, cursor: str | None = None, staff: Staff = staff_required(Perm.ADMINISTER)) -> Response:
    rows, next_cursor = db(request).read(lambda s: mail.mailbox(s, limit=PAGE, cursor=cursor))
    next_url = f"/admin/mailbox?cursor={next_cursor}" if next_cursor else None
    smtp = bool(request.app.state.settings.smtp_url)
    return render(
        request, "admin/mailbox.html", {"active": "mailbox", "messages": rows, "next_url": next_url, "smtp": smtp}
    )


@router.get("/mailbox/{message_id}")
def message(request: Request, message_id: str, staff: Staff = staff_required(Perm.ADMINISTER)) -> Response:
    def run(s: Session) -> dict[str, Any]:
        found = mail.get(s, message_id)
        return {"message": found, "attempts": mail.attempts(s, found.id)}

    return render(request, "admin/mail_message.html", {"active": "mailbox", **db(request).read(run)})
