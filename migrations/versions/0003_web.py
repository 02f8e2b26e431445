"""Failed token attempts per client address (admin, cron and metrics tokens are throttled).

Revision ID: 0003_web
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_web"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create auth_failures."""
    op.create_table(
        "auth_failures",
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("client", sa.String(64), primary_key=True),
        sa.Column("window_start", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    """Drop auth_failures."""
    op.drop_table("auth_failures")
