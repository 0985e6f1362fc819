from __future__ import annotations

from dataclasses import dataclass

from patron.access.roles import Perm, Role, allows


@dataclass(frozen=True)
class Actor:
    """Whoever makes a change: an API key, a staff user, a member in the portal, or the system."""

    kind: str  # api_key | user | member | system
    id: str | None
    name: str | None
    role: Role | None = None
    location: str | None = None

    def can(self, perm: Perm) -> bool:
        return self.role is not None and allows(self.role, perm)


SYSTEM = Actor(kind="system", id=None, name="system")
