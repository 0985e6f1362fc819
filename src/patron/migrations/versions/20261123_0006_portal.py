"""member portal: sign-in codes, sessions, deletion requests; the email outbox and delivery log

Revision ID: 20261123_portal
Revises: 20261123_rewards
Create Date: 2026-11-23 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261123_portal"
down_revision: str | None = "20261123_rewards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mail_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("to_address", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=True),
        sa.Column("sensitive", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_mail_messages_member_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_messages")),
    )
    op.create_index(op.f("ix_mail_messages_member_id"), "mail_messages", ["member_id"], unique=False)
    op.create_index(
        "ix_mail_messages_status_next_attempt_at", "mail_messages", ["status", "next_attempt_at"], unique=False
    )
    op.create_table(
        "mail_attempts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"], ["mail_messages.id"], name=op.f("fk_mail_attempts_message_id_mail_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_attempts")),
    )
    op.create_index(op.f("ix_mail_attempts_message_id"), "mail_attempts", ["message_id"], unique=False)
    op.create_table(
        "portal_sign_in_codes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("address_hash", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_portal_sign_in_codes_member_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_sign_in_codes")),
    )
    op.create_index(op.f("ix_portal_sign_in_codes_member_id"), "portal_sign_in_codes", ["member_id"], unique=False)
    op.create_index(
        "ix_portal_sign_in_codes_address_hash_created_at",
        "portal_sign_in_codes",
        ["address_hash", "created_at"],
        unique=False,
    )
    op.create_table(
        "portal_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_portal_sessions_member_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_portal_sessions_token_hash")),
    )
    op.create_index(op.f("ix_portal_sessions_member_id"), "portal_sessions", ["member_id"], unique=False)
    op.create_table(
        "deletion_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_deletion_requests_member_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deletion_requests")),
    )
    op.create_index(op.f("ix_deletion_requests_member_id"), "deletion_requests", ["member_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_deletion_requests_member_id"), table_name="deletion_requests")
    op.drop_table("deletion_requests")
    op.drop_index(op.f("ix_portal_sessions_member_id"), table_name="portal_sessions")
    op.drop_table("portal_sessions")
    op.drop_index("ix_portal_sign_in_codes_address_hash_created_at", table_name="portal_sign_in_codes")
    op.drop_index(op.f("ix_portal_sign_in_codes_member_id"), table_name="portal_sign_in_codes")
    op.drop_table("portal_sign_in_codes")
    op.drop_index(op.f("ix_mail_attempts_message_id"), table_name="mail_attempts")
    op.drop_table("mail_attempts")
    op.drop_index("ix_mail_messages_status_next_attempt_at", table_name="mail_messages")
    op.drop_index(op.f("ix_mail_messages_member_id"), table_name="mail_messages")
    op.drop_table("mail_messages")
