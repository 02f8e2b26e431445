"""Portals: the version set up last, and an uninstall waiting for proof.

Revision ID: 0002_core
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_core"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add setup_version and the pending-uninstall columns to portals."""
    with op.batch_alter_table("portals") as batch:
        batch.add_column(sa.Column("setup_version", sa.String(32)))
        batch.add_column(sa.Column("uninstall_pending_at", sa.Integer))
        batch.add_column(sa.Column("uninstall_pending_clean", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    """Drop the columns again."""
    with op.batch_alter_table("portals") as batch:
        batch.drop_column("uninstall_pending_clean")
        batch.drop_column("uninstall_pending_at")
        batch.drop_column("setup_version")
