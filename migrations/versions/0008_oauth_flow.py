"""OAuth code flow: single-use, browser-bound `state` values of /auth/bitrix24.

Revision ID: 0008_oauth_flow
Revises: 0007_openlines
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_oauth_flow"
down_revision = "0007_openlines"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create oauth_states."""
    op.create_table(
        "oauth_states",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("state_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("nonce_hash", sa.String(64), nullable=False),
        sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Integer, nullable=False),
        sa.Column("used_at", sa.Integer),
    )
    op.create_index("ix_oauth_states_expires", "oauth_states", ["expires_at"])


def downgrade() -> None:
    """Drop oauth_states."""
    op.drop_index("ix_oauth_states_expires", table_name="oauth_states")
    op.drop_table("oauth_states")
