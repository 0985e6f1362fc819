"""rewards catalogue and coupons

Revision ID: 20261123_rewards
Revises: 20261123_jobs
Create Date: 2026-11-23 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261123_rewards"
down_revision: str | None = "20261123_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rewards",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("percent", sa.String(length=20), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("max_discount_minor", sa.BigInteger(), nullable=True),
        sa.Column("sku", sa.String(length=100), nullable=True),
        sa.Column("cost_points", sa.BigInteger(), nullable=False),
        sa.Column("stock", sa.BigInteger(), nullable=True),
        sa.Column("limit_per_member", sa.Integer(), nullable=True),
        sa.Column("tiers", sa.JSON(), nullable=False),
        sa.Column("segments", sa.JSON(), nullable=False),
        sa.Column("valid_days", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("claimed", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rewards")),
    )
    op.create_table(
        "coupons",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("reward_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("percent", sa.String(length=20), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("max_discount_minor", sa.BigInteger(), nullable=True),
        sa.Column("sku", sa.String(length=100), nullable=True),
        sa.Column("points_spent", sa.BigInteger(), nullable=False),
        sa.Column("redeem_entry_id", sa.Uuid(), nullable=True),
        sa.Column("claim_external_id", sa.String(length=200), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("discount_minor", sa.BigInteger(), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_coupons_member_id_members")),
        sa.ForeignKeyConstraint(
            ["redeem_entry_id"], ["ledger_entries.id"], name=op.f("fk_coupons_redeem_entry_id_ledger_entries")
        ),
        sa.ForeignKeyConstraint(["reward_id"], ["rewards.id"], name=op.f("fk_coupons_reward_id_rewards")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupons")),
        sa.UniqueConstraint("code", name=op.f("uq_coupons_code")),
    )
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.create_index("ix_coupons_member_id_id", ["member_id", "id"], unique=False)
        batch_op.create_index("ix_coupons_reward_id_member_id", ["reward_id", "member_id"], unique=False)
        batch_op.create_index("ix_coupons_transaction_id", ["transaction_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.drop_index("ix_coupons_transaction_id")
        batch_op.drop_index("ix_coupons_reward_id_member_id")
        batch_op.drop_index("ix_coupons_member_id_id")
    op.drop_table("coupons")
    op.drop_table("rewards")
