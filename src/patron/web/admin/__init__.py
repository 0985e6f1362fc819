"""The back office at /admin: one module per area, each registering its menu entries."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from patron.web.admin import api_keys, audit_log, auth, dashboard, mailbox, members, rewards, rules, segments, tiers
from patron.web.security import web_context

router = APIRouter(dependencies=[Depends(web_context)], include_in_schema=False)
for module in (auth, dashboard, members, rules, rewards, tiers, segments, audit_log, api_keys, mailbox):
    router.include_router(module.router)
