"""A test client that speaks the API as an integrator would: keys per role, JSON in and out."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from patron.access import service as access
from patron.access.principal import SYSTEM
from patron.access.roles import Role
from patron.db import Database


class Api:
    def __init__(self, client: TestClient, db: Database) -> None:
        self.client = client
        self.db = db
        self.keys: dict[str, str] = {}

    def key(self, role: str, location: str | None = None) -> str:
        name = f"{role}@{location}" if location else role
        if name not in self.keys:
            _, token = self.db.write(
                lambda s: access.create_key(s, SYSTEM, role=Role(role), name=f"test {name}", location=location)
            )
            self.keys[name] = token
        return self.keys[name]

    def request(self, method: str, path: str, *, role: str | None = "admin", json: Any = None, **kw: Any) -> Any:
        headers = kw.pop("headers", {})
        if role is not None:
            headers["Authorization"] = f"Bearer {self.key(role)}"
        return self.client.request(method, path, json=json, headers=headers, **kw)

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, json=json, **kw)

    def patch(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.request("PATCH", path, json=json, **kw)

    def put(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, json=json, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    # Small factories: real API calls with sensible defaults.
    _seq = 0

    def enrol(self, **fields: Any) -> dict[str, Any]:
        Api._seq += 1
        body = {
            "first_name": "Anna",
            "last_name": f"Test{Api._seq}",
            "phone": f"+7916{Api._seq:07d}",
            "consents": {"program_rules": True},
        }
        body.update(fields)
        r = self.post("/v1/members", body)
        assert r.status_code == 201, r.text
        return dict(r.json())
