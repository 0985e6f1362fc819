"""heap-only updates: spending or expiring a lot (`remaining`), moving a balance, and changing a
member's tier touch no index column and find room on their page, so PostgreSQL updates the row
without rewriting every index of the table. Point lots are indexed by member alone; members lose
the dashboard's (tier_code, status) index, and count their tiers by a scan.

Revision ID: 20261123_heap_only_updates
Revises: 20261123_analytics
Create Date: 2026-11-23 18:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261123_heap_only_updates"
down_revision: str | None = "20261123_analytics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Lots are written once and then updated as they are spent and expire; balances on every
# transaction; tiers at every requalification. Free room on each page lets PostgreSQL keep the
# new row version beside the old one without touching any index. It applies to pages written from
# now on (VACUUM FULL rewrites the old ones).
FILLFACTOR = {"point_lots": 85, "point_accounts": 80, "members": 80}


def upgrade() -> None:
    op.create_index("ix_point_lots_member_id", "point_lots", ["member_id"], unique=False)
    op.drop_index("ix_point_lots_member_open", table_name="point_lots")
    op.drop_index("ix_members_tier_code_status", table_name="members")
    if op.get_bind().dialect.name == "postgresql":
        for table, fillfactor in FILLFACTOR.items():
            op.execute(f"ALTER TABLE {table} SET (fillfactor = {fillfactor})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in FILLFACTOR:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
    op.create_index("ix_members_tier_code_status", "members", ["tier_code", "status"], unique=False)
    op.create_index("ix_point_lots_member_open", "point_lots", ["member_id", "remaining"], unique=False)
    op.drop_index("ix_point_lots_member_id", table_name="point_lots")
