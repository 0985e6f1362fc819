"""segments

Revision ID: 20261123_segments
Revises: 20261123_points
Create Date: 2026-11-23 16:20:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "20261123_segments"
down_revision: str | None = "20261123_points"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The three segments of the customer's differentiated programme (seeds/000: VIP, regular, new),
# written for a chain of car service centres and the programme's default currency, RUB. Money is
# in minor units (kopecks), as segments/service.py stores it. They are editable like any segment.
#
# A driver comes to a service centre a few times a year: the oil change once or twice, the
# seasonal tyre change in spring and in autumn, the odd repair. So within the last 365 days:
#
# * vip: came back (2+ visits) and spent 50,000 RUB or more: premium cars, regular maintenance
#   with repairs, a family's cars. The seed's "high spend, frequent visits, long relationship";
#   the offers are a personal manager, priority service, exclusive discounts and gifts.
# * regular: came back (2+ visits) and spent less than 50,000 RUB: the seed's "regular visits,
#   medium spend", who get discounts on extra services and priority booking.
# * new: enrolled in the last 90 days and has been at most once: the seed's "first visit", who
#   get the welcome bonus and a discount on the first service.
#
# The three never overlap: new members have at most one visit, the other two at least two, and
# vip and regular split those at the same spend. Members who came once in the last year and joined
# earlier belong to none: they are the lapsed customers a marketer targets with a new segment.
VIP_SPEND_MINOR = 50_000_00
SEEDS = [
    {
        "code": "vip",
        "name": "VIP",
        "description": "Came back and spent 50,000 RUB or more in the last 365 days",
        "match": "all",
        "conditions": [
            {"field": "visits", "op": "gte", "value": 2, "window_days": 365},
            {"field": "spend", "op": "gte", "value": VIP_SPEND_MINOR, "window_days": 365},
        ],
    },
    {
        "code": "regular",
        "name": "Regular customers",
        "description": "Came back and spent less than 50,000 RUB in the last 365 days",
        "match": "all",
        "conditions": [
            {"field": "visits", "op": "gte", "value": 2, "window_days": 365},
            {"field": "spend", "op": "lt", "value": VIP_SPEND_MINOR, "window_days": 365},
        ],
    },
    {
        "code": "new",
        "name": "New customers",
        "description": "Enrolled in the last 90 days, at most one visit so far",
        "match": "all",
        "conditions": [
            {"field": "days_since_enrolled", "op": "lte", "value": 90},
            {"field": "visits", "op": "lte", "value": 1},
        ],
    },
]


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("match", sa.String(length=3), nullable=False),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("system", sa.Boolean(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_segments")),
    )
    op.create_table(
        "segment_members",
        sa.Column("segment_code", sa.String(length=40), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("segment_code", "member_id", name=op.f("pk_segment_members")),
    )
    with op.batch_alter_table("segment_members", schema=None) as batch_op:
        batch_op.create_index("ix_segment_members_member_id", ["member_id"], unique=False)

    op.create_table(
        "segment_sizes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("segment_code", sa.String(length=40), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("joined", sa.BigInteger(), nullable=False),
        sa.Column("left", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["segment_code"], ["segments.code"], name=op.f("fk_segment_sizes_segment_code_segments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_sizes")),
    )
    with op.batch_alter_table("segment_sizes", schema=None) as batch_op:
        batch_op.create_index("ix_segment_sizes_segment_code_id", ["segment_code", "id"], unique=False)

    segments = sa.table(
        "segments",
        sa.column("code"),
        sa.column("name"),
        sa.column("description"),
        sa.column("match"),
        sa.column("conditions", sa.JSON()),
        sa.column("system", sa.Boolean()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    op.bulk_insert(segments, [{**seed, "system": True, "created_at": now, "updated_at": now} for seed in SEEDS])


def downgrade() -> None:
    with op.batch_alter_table("segment_sizes", schema=None) as batch_op:
        batch_op.drop_index("ix_segment_sizes_segment_code_id")
    op.drop_table("segment_sizes")
    with op.batch_alter_table("segment_members", schema=None) as batch_op:
        batch_op.drop_index("ix_segment_members_member_id")
    op.drop_table("segment_members")
    op.drop_table("segments")
