"""The POS screen at /pos, for cashiers (and agents and admins) signed in with the staff sign-in."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from patron.web.pos import views
from patron.web.security import web_context

router = APIRouter(dependencies=[Depends(web_context)], include_in_schema=False)
router.include_router(views.router, prefix="/pos")
