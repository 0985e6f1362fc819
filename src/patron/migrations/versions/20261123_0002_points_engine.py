"""points engine

Revision ID: 20261123_points
Revises: 20261123_foundation
Create Date: 2026-11-23 13:02:54.785769
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261123_points"
down_revision: str | None = "20261123_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("program", schema=None) as batch_op:
        batch_op.add_column(sa.Column("config_version", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "earning_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("per_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("skus", sa.JSON(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("factor", sa.String(length=20), nullable=True),
        sa.Column("event_type", sa.String(length=60), nullable=True),
        sa.Column("max_points", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_earning_rules")),
    )
    with op.batch_alter_table("earning_rules", schema=None) as batch_op:
        batch_op.create_index("ix_earning_rules_kind_active", ["kind", "active"], unique=False)

    op.create_table(
        "idempotency_records",
        sa.Column("scope", sa.String(length=30), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "external_id", name=op.f("pk_idempotency_records")),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("rule_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actor_kind", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_ledger_entries_member_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_entries_member_id_id", ["member_id", "id"], unique=False)
        batch_op.create_index("ix_ledger_entries_transaction_id", ["transaction_id"], unique=False)

    op.create_table(
        "transactions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("location", sa.String(length=40), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("discount_minor", sa.BigInteger(), nullable=False),
        sa.Column("points_redeemed", sa.BigInteger(), nullable=False),
        sa.Column("points_value_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_due_minor", sa.BigInteger(), nullable=False),
        sa.Column("points_earned", sa.BigInteger(), nullable=False),
        sa.Column("returned_amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("returned_net_minor", sa.BigInteger(), nullable=False),
        sa.Column("points_reversed", sa.BigInteger(), nullable=False),
        sa.Column("points_restored", sa.BigInteger(), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("actor_kind", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_transactions_member_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint("external_id", name=op.f("uq_transactions_external_id")),
    )
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index("ix_transactions_member_id_occurred_at", ["member_id", "occurred_at"], unique=False)
        batch_op.create_index("ix_transactions_occurred_at", ["occurred_at"], unique=False)

    op.create_table(
        "point_lots",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("entry_id", sa.Uuid(), nullable=False),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["ledger_entries.id"], name=op.f("fk_point_lots_entry_id_ledger_entries")
        ),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_point_lots_member_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_point_lots")),
    )
    with op.batch_alter_table("point_lots", schema=None) as batch_op:
        batch_op.create_index("ix_point_lots_expires_at", ["expires_at"], unique=False)
        batch_op.create_index("ix_point_lots_member_open", ["member_id", "remaining"], unique=False)
        batch_op.create_index("ix_point_lots_pending_available_at", ["pending", "available_at"], unique=False)
        batch_op.create_index("ix_point_lots_transaction_id", ["transaction_id"], unique=False)

    op.create_table(
        "transaction_lines",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("transaction_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("category", sa.String(length=100), nullable=True),
        sa.Column("quantity", sa.String(length=20), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("net_minor", sa.BigInteger(), nullable=False),
        sa.Column("returned_quantity", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["transaction_id"], ["transactions.id"], name=op.f("fk_transaction_lines_transaction_id_transactions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transaction_lines")),
    )
    with op.batch_alter_table("transaction_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_transaction_lines_transaction_id"), ["transaction_id"], unique=False)

    op.create_table(
        "transaction_returns",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("transaction_id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("points_reversed", sa.BigInteger(), nullable=False),
        sa.Column("points_restored", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["transaction_id"], ["transactions.id"], name=op.f("fk_transaction_returns_transaction_id_transactions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transaction_returns")),
        sa.UniqueConstraint("external_id", name=op.f("uq_transaction_returns_external_id")),
    )
    with op.batch_alter_table("transaction_returns", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_transaction_returns_transaction_id"), ["transaction_id"], unique=False)

    op.create_table(
        "lot_allocations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("entry_id", sa.Uuid(), nullable=False),
        sa.Column("lot_id", sa.Uuid(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["ledger_entries.id"], name=op.f("fk_lot_allocations_entry_id_ledger_entries")
        ),
        sa.ForeignKeyConstraint(["lot_id"], ["point_lots.id"], name=op.f("fk_lot_allocations_lot_id_point_lots")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lot_allocations")),
    )
    with op.batch_alter_table("lot_allocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lot_allocations_entry_id"), ["entry_id"], unique=False)
    op.create_table(
        "tier_changes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("from_code", sa.String(length=40), nullable=True),
        sa.Column("to_code", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("metric_value", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_tier_changes_member_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tier_changes")),
    )
    with op.batch_alter_table("tier_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tier_changes_member_id"), ["member_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tier_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tier_changes_member_id"))
    op.drop_table("tier_changes")
    with op.batch_alter_table("program", schema=None) as batch_op:
        batch_op.drop_column("config_version")
    with op.batch_alter_table("lot_allocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lot_allocations_entry_id"))

    op.drop_table("lot_allocations")
    with op.batch_alter_table("transaction_returns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transaction_returns_transaction_id"))

    op.drop_table("transaction_returns")
    with op.batch_alter_table("transaction_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transaction_lines_transaction_id"))

    op.drop_table("transaction_lines")
    with op.batch_alter_table("point_lots", schema=None) as batch_op:
        batch_op.drop_index("ix_point_lots_transaction_id")
        batch_op.drop_index("ix_point_lots_pending_available_at")
        batch_op.drop_index("ix_point_lots_member_open")
        batch_op.drop_index("ix_point_lots_expires_at")

    op.drop_table("point_lots")
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_transactions_occurred_at")
        batch_op.drop_index("ix_transactions_member_id_occurred_at")

    op.drop_table("transactions")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entries_transaction_id")
        batch_op.drop_index("ix_ledger_entries_member_id_id")

    op.drop_table("ledger_entries")
    op.drop_table("idempotency_records")
    with op.batch_alter_table("earning_rules", schema=None) as batch_op:
        batch_op.drop_index("ix_earning_rules_kind_active")

    op.drop_table("earning_rules")
