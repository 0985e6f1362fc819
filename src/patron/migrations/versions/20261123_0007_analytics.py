"""analytics: the dashboard's rollups of closed days; indexes for its reads of open days and tiers

Revision ID: 20261123_analytics
Revises: 20261123_portal
Create Date: 2026-11-23 23:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261123_analytics"
down_revision: str | None = "20261123_portal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "analytics_ledger_days",
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("issued", sa.BigInteger(), nullable=False),
        sa.Column("redeemed", sa.BigInteger(), nullable=False),
        sa.Column("expired", sa.BigInteger(), nullable=False),
        sa.Column("reversed", sa.BigInteger(), nullable=False),
        sa.Column("adjusted_down", sa.BigInteger(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("zone", "day", name=op.f("pk_analytics_ledger_days")),
    )
    op.create_table(
        "analytics_enrolment_days",
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("enrolled", sa.BigInteger(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("zone", "day", name=op.f("pk_analytics_enrolment_days")),
    )
    op.create_table(
        "analytics_purchase_days",
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("previous", sa.Date(), nullable=False),
        sa.Column("members", sa.BigInteger(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("zone", "day", "previous", name=op.f("pk_analytics_purchase_days")),
    )
    op.create_table(
        "analytics_rollup_checks",
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("checked", sa.Uuid(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("zone", "source", name=op.f("pk_analytics_rollup_checks")),
    )
    op.create_index("ix_ledger_entries_created_at", "ledger_entries", ["created_at"], unique=False)
    op.create_index("ix_members_tier_code_status", "members", ["tier_code", "status"], unique=False)
    op.create_index(
        "ix_members_erased_enrolled_at",
        "members",
        ["enrolled_at"],
        unique=False,
        postgresql_where=sa.text("status = 'erased'"),
        sqlite_where=sa.text("status = 'erased'"),
    )


def downgrade() -> None:
    op.drop_index("ix_members_erased_enrolled_at", table_name="members")
    op.drop_index("ix_members_tier_code_status", table_name="members")
    op.drop_index("ix_ledger_entries_created_at", table_name="ledger_entries")
    op.drop_table("analytics_rollup_checks")
    op.drop_table("analytics_purchase_days")
    op.drop_table("analytics_enrolment_days")
    op.drop_table("analytics_ledger_days")
