"""Token keeper: credentials.refresh_sent_at, set while a refresh request may be in flight.

Revision ID: 0004_keeper
Revises: 0003_web
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_keeper"
down_revision = "0003_web"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column (nullable: no request is in flight while migrating)."""
    with op.batch_alter_table("credentials") as batch:
        batch.add_column(sa.Column("refresh_sent_at", sa.Float, nullable=True))


def downgrade() -> None:
    """Drop the column."""
    with op.batch_alter_table("credentials") as batch:
        batch.drop_column("refresh_sent_at")
