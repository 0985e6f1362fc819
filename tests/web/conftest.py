"""Browser tests: a real Patron server and Debian's headless Chromium driven by Playwright.

These tests run on SQLite only: one live server per test session (per xdist worker) serves a
temporary SQLite database copied from the migrated template; the server is a real uvicorn
subprocess (tests/live_server.py). The database is shared by the session's tests, so each test
makes its own members (through the services, `web.db`) and never counts on what others did.

Chromium is Debian's `/usr/bin/chromium` (scripts/test installs it), launched once per session by
Playwright with `executable_path` (never `playwright install`), headless, in a fresh temporary
profile. Each test gets a fresh browser context and page (`page`), which fails the test at the end
if the page logged a console error or threw. Screenshots go to test-artifacts/screenshots/.

Fixtures: `web` (base_url, db, staff accounts), `browser`, `page`, `sign_in(page, role)`,
`shot(page, name)`, and `web_server(extra_env)` for a second server with its own environment.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from patron.access import service as access
from patron.access.principal import SYSTEM
from patron.access.roles import Role
from patron.db import Database
from tests.conftest import TEST_SECRET, settings_for
from tests.live_server import LiveServer

CHROMIUM = os.environ.get("PATRON_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
STAFF_PASSWORD = "correct-horse-battery"
ROLES = ("admin", "marketer", "agent", "cashier", "analyst")


def staff_email(role: str) -> str:
    return f"{role}@test.patron"


@dataclass
class WebServer:
    base_url: str
    db: Database
    server: LiveServer
    staff: dict[str, str] = field(default_factory=dict)  # role -> email; password STAFF_PASSWORD

    def url(self, path: str) -> str:
        return self.base_url + path


def _make_server(tmp: Path, template: Path, extra_env: dict[str, str]) -> WebServer:
    path = tmp / "web.db"
    shutil.copyfile(template, path)
    url = f"sqlite:///{path}"
    db = Database(settings_for(url))
    staff = {}
    for role in ROLES:
        email = staff_email(role)
        db.write(
            lambda s, role=role, email=email: access.create_user(
                s, SYSTEM, email=email, password=STAFF_PASSWORD, role=Role(role), name=f"Test {role}"
            )
        )
        staff[role] = email
    saved = {k: os.environ.get(k) for k in extra_env}
    os.environ.update(extra_env)  # LiveServer passes our environment on to the server process
    try:
        server = LiveServer(url, TEST_SECRET, tmp)
        server.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return WebServer(server.base_url, db, server, staff)


@pytest.fixture(scope="session")
def web_server(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[Callable[[dict[str, str]], WebServer]]:
    """A factory: a live server (on its own fresh SQLite database) per distinct environment."""
    made: dict[tuple[tuple[str, str], ...], WebServer] = {}

    def get(extra_env: dict[str, str]) -> WebServer:
        key = tuple(sorted(extra_env.items()))
        if key not in made:
            made[key] = _make_server(tmp_path_factory.mktemp("web"), sqlite_template, extra_env)
        return made[key]

    yield get
    for server in made.values():
        server.server.stop()
        server.db.dispose()


@pytest.fixture(scope="session")
def web(web_server: Callable[[dict[str, str]], WebServer]) -> WebServer:
    """The session's live server with a staff account per role."""
    return web_server({})


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # launch() gives every run a fresh temporary profile (user-data-dir) and removes it after.
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


_HTTP_STATUS = re.compile(r"the server responded with a status of (\d{3})")


def expect_status(page: Any, *statuses: int) -> None:
    """Documents answered with these statuses are expected (403 page, refused form): not errors."""
    page.expected_statuses.update(statuses)


class ConsoleErrors(list[str]):
    """What the page logged as an error or threw, collected for the end of the test."""


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh context and page; the test fails if any page logged a console error or threw."""
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    errors = ConsoleErrors()
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    pg.expected_statuses = set()  # see expect_status()

    def on_console(msg: Any) -> None:
        if msg.type != "error":
            return
        status = _HTTP_STATUS.search(msg.text)
        page_url = str((msg.location or {}).get("url", ""))
        if status and int(status.group(1)) in pg.expected_statuses and "/static/" not in page_url:
            return  # an error page the test asked for (Chromium logs its status as a console error)
        errors.append(f"console {msg.type}: {msg.text} ({page_url})")

    pg.on("console", on_console)
    pg.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    pg.on("dialog", lambda dialog: dialog.accept())
    pg.console_errors = errors
    try:
        yield pg
    finally:
        context.close()
    assert not errors, "the page logged errors:\n" + "\n".join(errors)


@pytest.fixture
def sign_in(web: WebServer) -> Callable[..., None]:
    """Sign `page` in as the test staff user of `role` through the sign-in form."""

    def run(pg: Any, role: str = "admin", *, lang: str = "en") -> None:
        pg.goto(web.url(f"/admin/sign-in?lang={lang}"))
        pg.fill("input[name=email]", web.staff[role])
        pg.fill("input[name=password]", STAFF_PASSWORD)
        pg.click("form[action='/admin/sign-in'] button[type=submit]")
        pg.wait_for_load_state()
        assert "/admin/sign-in" not in pg.url, f"sign-in as {role} failed: {pg.url}"

    return run


@pytest.fixture
def shot() -> Callable[[Any, str], Path]:
    """Save a full-page screenshot as test-artifacts/screenshots/NAME.png."""

    def run(pg: Any, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        pg.screenshot(path=str(path), full_page=True)
        return path

    return run
