"""Requests per client address and endpoint group in fixed windows (per-address rate limits).

Revision ID: 0009_rate_limits
Revises: 0008_oauth_flow
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_rate_limits"
down_revision = "0008_oauth_flow"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create rate_limits."""
    op.create_table(
        "rate_limits",
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("client", sa.String(64), primary_key=True),
        sa.Column("window_start", sa.Integer, nullable=False),
        sa.Column("hits", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    """Drop rate_limits."""
    op.drop_table("rate_limits")
