"""The member portal at /portal: sign-in by a one-time code, then the member's own pages only."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from patron.web.portal import views
from patron.web.security import web_context

router = APIRouter(dependencies=[Depends(web_context)], include_in_schema=False)
router.include_router(views.router, prefix="/portal")
