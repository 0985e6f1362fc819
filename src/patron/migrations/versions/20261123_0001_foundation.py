"""foundation

Revision ID: 20261123_foundation
Revises:
Create Date: 2026-11-23 12:53:28.453656
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "20261123_foundation"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("location", sa.String(length=40), nullable=True),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_kind", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.String(length=40), nullable=True),
        sa.Column("actor_name", sa.String(length=254), nullable=True),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("entity_type", sa.String(length=40), nullable=False),
        sa.Column("entity_id", sa.String(length=60), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_entity", ["entity_type", "entity_id"], unique=False)

    op.create_table(
        "members",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=True),
        sa.Column("last_name", sa.String(length=100), nullable=True),
        sa.Column("name_key", sa.String(length=201), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("location", sa.String(length=40), nullable=True),
        sa.Column("tier_code", sa.String(length=40), nullable=False),
        sa.Column("referral_code", sa.String(length=12), nullable=False),
        sa.Column("referred_by_id", sa.Uuid(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("rules_version", sa.String(length=40), nullable=False),
        sa.Column("rules_accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("marketing_email", sa.Boolean(), nullable=False),
        sa.Column("marketing_sms", sa.Boolean(), nullable=False),
        sa.Column("marketing_push", sa.Boolean(), nullable=False),
        sa.Column("block_reason", sa.String(length=500), nullable=True),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["referred_by_id"], ["members.id"], name=op.f("fk_members_referred_by_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_members")),
        sa.UniqueConstraint("email", name=op.f("uq_members_email")),
        sa.UniqueConstraint("number", name=op.f("uq_members_number")),
        sa.UniqueConstraint("phone", name=op.f("uq_members_phone")),
        sa.UniqueConstraint("referral_code", name=op.f("uq_members_referral_code")),
    )
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.create_index("ix_members_enrolled_at", ["enrolled_at"], unique=False)
        batch_op.create_index("ix_members_last_name", ["last_name"], unique=False)
        batch_op.create_index("ix_members_name_key", ["name_key"], unique=False)

    op.create_table(
        "program",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("phone_region", sa.String(length=2), nullable=False),
        sa.Column("point_value_minor", sa.Integer(), nullable=False),
        sa.Column("pending_days", sa.Integer(), nullable=False),
        sa.Column("expiry_policy", sa.String(length=20), nullable=False),
        sa.Column("expiry_days", sa.Integer(), nullable=True),
        sa.Column("rules_version", sa.String(length=40), nullable=False),
        sa.Column("card_prefix", sa.String(length=8), nullable=False),
        sa.Column("tier_metric", sa.String(length=10), nullable=False),
        sa.Column("tier_window_days", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_program")),
    )
    op.create_table(
        "staff_users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("location", sa.String(length=40), nullable=True),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_users")),
        sa.UniqueConstraint("email", name=op.f("uq_staff_users_email")),
    )
    op.create_table(
        "tiers",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("multiplier", sa.String(length=20), nullable=False),
        sa.Column("benefits", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_tiers")),
    )
    op.create_table(
        "cards",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("number", sa.String(length=19), nullable=True),
        sa.Column("pan_hash", sa.String(length=64), nullable=True),
        sa.Column("last4", sa.String(length=4), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("replaced_by_id", sa.Uuid(), nullable=True),
        sa.Column("block_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_cards_member_id_members")),
        sa.ForeignKeyConstraint(["replaced_by_id"], ["cards.id"], name=op.f("fk_cards_replaced_by_id_cards")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cards")),
        sa.UniqueConstraint("number", name=op.f("uq_cards_number")),
        sa.UniqueConstraint("pan_hash", name=op.f("uq_cards_pan_hash")),
    )
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cards_member_id"), ["member_id"], unique=False)

    op.create_table(
        "consent_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("rules_version", sa.String(length=40), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_consent_events_member_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_events")),
    )
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consent_events_member_id"), ["member_id"], unique=False)

    op.create_table(
        "point_accounts",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("available", sa.BigInteger(), nullable=False),
        sa.Column("pending", sa.BigInteger(), nullable=False),
        sa.Column("lifetime_earned", sa.BigInteger(), nullable=False),
        sa.Column("redeemed", sa.BigInteger(), nullable=False),
        sa.Column("expired", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_point_accounts_member_id_members")),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_point_accounts")),
    )

    now = datetime.now(UTC)
    program = sa.table(
        "program",
        *(
            sa.column(c)
            for c in (
                "id",
                "name",
                "currency",
                "timezone",
                "phone_region",
                "point_value_minor",
                "pending_days",
                "expiry_policy",
                "expiry_days",
                "rules_version",
                "card_prefix",
                "tier_metric",
                "tier_window_days",
            )
        ),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(
        program,
        [
            {
                "id": 1,
                "name": "Loyalty programme",
                "currency": "RUB",
                "timezone": "Europe/Moscow",
                "phone_region": "RU",
                "point_value_minor": 100,
                "pending_days": 0,
                "expiry_policy": "none",
                "expiry_days": None,
                "rules_version": "1",
                "card_prefix": "7800",
                "tier_metric": "points",
                "tier_window_days": None,
                "updated_at": now,
            }
        ],
    )
    tiers = sa.table(
        "tiers",
        sa.column("code"),
        sa.column("name"),
        sa.column("position"),
        sa.column("threshold"),
        sa.column("multiplier"),
        sa.column("benefits", sa.JSON()),
    )
    op.bulk_insert(
        tiers,
        [
            {"code": "member", "name": "Member", "position": 0, "threshold": 0, "multiplier": "1", "benefits": []},
        ],
    )


def downgrade() -> None:
    op.drop_table("point_accounts")
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_events_member_id"))

    op.drop_table("consent_events")
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cards_member_id"))

    op.drop_table("cards")
    op.drop_table("tiers")
    op.drop_table("staff_users")
    op.drop_table("program")
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index("ix_members_last_name")
        batch_op.drop_index("ix_members_name_key")
        batch_op.drop_index("ix_members_enrolled_at")

    op.drop_table("members")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_entity")

    op.drop_table("audit_log")
    op.drop_table("api_keys")
