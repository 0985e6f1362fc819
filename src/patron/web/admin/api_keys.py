"""API keys: the list, a new key (shown once, on the answer to the form), revocation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from patron.access import service as access
from patron.access.roles import Perm, Role
from patron.errors import PatronError, ValidationFailed
from patron.web import i18n, security
from patron.web.admin.common import db, optional, text
from patron.web.errors import describe
from patron.web.i18n import N_
from patron.web.security import Staff, staff_required
from patron.web.templating import MenuItem, add_menu_item, redirect, render

router = APIRouter(prefix="/admin")
add_menu_item(MenuItem("keys", N_("API keys"), "/admin/keys", Perm.ADMINISTER, order=90))

ROLE_LABELS = {
    "admin": N_("Administrator"),
    "marketer": N_("Marketer"),
    "agent": N_("Contact-centre agent"),
    "cashier": N_("Cashier"),
    "analyst": N_("Analyst"),
}


def _page(request: Request, **extra: Any) -> Response:
    keys = db(request).read(access.list_keys)
    status_code = extra.pop("status_code", 200)
    return render(
        request,
        "admin/keys.html",
        {"active": "keys", "keys": keys, "roles": ROLE_LABELS, "values": {}, **extra},
        status_code=status_code,
    )


@router.get("/keys")
def key_list(request: Request, staff: Staff = staff_required(Perm.ADMINISTER)) -> Response:
    return _page(request)


@router.post("/keys")
def create_key(
    request: Request, form: FormData = Depends(security.checked_form), staff: Staff = staff_required(Perm.ADMINISTER)
) -> Response:
    values = {"role": text(form, "role"), "name": text(form, "name"), "location": text(form, "location")}
    try:
        if values["role"] not in ROLE_LABELS:
            raise ValidationFailed("choose a role", field="role")
        role = Role(values["role"])
        name, location = optional(form, "name"), optional(form, "location")
        key, token = db(request).write(
            lambda s: access.create_key(s, staff.actor, role=role, name=name and name[:100], location=location)
        )
    except PatronError as exc:
        info = describe(exc, i18n.gettext(request))
        return _page(request, error=info, values=values, status_code=exc.status)
    # Rendered, not redirected: the key is in this answer only and is never stored in a cookie.
    return _page(request, new_key=token, new_key_name=key.name)


@router.post("/keys/{prefix}/revoke")
def revoke_key(
    request: Request,
    prefix: str,
    form: FormData = Depends(security.checked_form),
    staff: Staff = staff_required(Perm.ADMINISTER),
) -> Response:
    key = db(request).write(lambda s: access.revoke_key(s, staff.actor, prefix))
    _ = i18n.gettext(request)
    security.flash(request, _("The key “%(name)s” is revoked.") % {"name": key.name})
    return redirect("/admin/keys")
