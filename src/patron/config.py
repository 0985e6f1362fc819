"""Typed settings, read from the environment with the PATRON_ prefix."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///patron.db"


class ConfigError(RuntimeError):
    """A setting is missing or wrong; the message says what to do."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PATRON_", extra="ignore")

    env: Literal["development", "production"] = "development"
    database_url: str = DEFAULT_DATABASE_URL
    secret: SecretStr | None = None
    smtp_url: str | None = None
    # The sender of Patron's emails; the programme's name is shown as the sender's name.
    mail_from: str = "no-reply@patron.localhost"
    log_level: str = "INFO"
    # Pool size per process; PostgreSQL only.
    db_pool_size: int = 10
    # The worker's timetable, as JSON: {"job": "daily HH:MM" | "hourly :MM" | "every N minutes" |
    # "off"} in the programme's time zone; jobs left out keep their defaults (jobs/schedule.py).
    schedule: dict[str, str] = Field(default_factory=dict)
    # The longest the worker sleeps before it looks at its timetable again, in seconds.
    worker_poll_seconds: float = Field(default=60, gt=0, le=3600)

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: dict[str, str]) -> dict[str, str]:
        from patron.jobs.schedule import DEFAULTS, parse

        for name, text in value.items():
            if name not in DEFAULTS:
                raise ValueError(f"no job named {name!r}; jobs: {', '.join(DEFAULTS)}")
            parse(text)
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        path = self.database_url.split("///", 1)[1] if "///" in self.database_url else ""
        if path in ("", ":memory:"):
            return None
        return Path(path)

    def secret_key(self) -> bytes:
        """The key for card hashes and signatures.

        In development on SQLite a random key is generated once and kept beside the
        database file, so hashes stay valid across restarts. Anywhere else it must be set.
        """
        if self.secret is not None and self.secret.get_secret_value():
            return self.secret.get_secret_value().encode()
        db_path = self.sqlite_path()
        if self.env == "production" or db_path is None:
            raise ConfigError(
                "PATRON_SECRET is not set. Set it to a long random string (for example the output "
                "of `python -c 'import secrets; print(secrets.token_urlsafe(48))'`) and keep it: "
                "card hashes depend on it."
            )
        key_file = db_path.with_name(db_path.name + ".secret")
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_urlsafe(48))
            key_file.chmod(0o600)
        return key_file.read_text().strip().encode()


@lru_cache
def get_settings() -> Settings:
    return Settings()
