"""Connect links (single-use, browser-bound) and expiring per-portal API tokens.

Revision ID: 0005_connect
Revises: 0004_keeper
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0005_connect"
down_revision = "0004_keeper"
branch_labels = None
depends_on = None

# Tokens issued before this revision had no expiry: they get the default lifetime from the upgrade on,
# so customers' scripts keep working for a while and every token now ends.
DEFAULT_TTL_SECONDS = 90 * 86400


def upgrade() -> None:
    """Add the connect-link table and the API token's issue and expiry times."""
    op.create_table(
        "connect_links",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE")),
        sa.Column("user_id", sa.Integer),
        sa.Column("user_name", sa.String(120)),
        sa.Column("lang", sa.String(8)),
        sa.Column("ticket_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("state_hash", sa.String(64), unique=True),
        sa.Column("nonce_hash", sa.String(64)),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Integer, nullable=False),
        sa.Column("finished_at", sa.Integer),
    )
    op.create_index("ix_connect_links_expires", "connect_links", ["expires_at"])
    op.add_column("portals", sa.Column("admin_token_issued_at", sa.Integer))
    op.add_column("portals", sa.Column("admin_token_expires_at", sa.Integer))
    now = int(time.time())
    portals = sa.table(
        "portals",
        sa.column("admin_token_hash", sa.String),
        sa.column("updated_at", sa.Integer),
        sa.column("admin_token_issued_at", sa.Integer),
        sa.column("admin_token_expires_at", sa.Integer),
    )
    op.execute(
        portals.update()
        .where(portals.c.admin_token_hash.isnot(None))
        .values(admin_token_issued_at=portals.c.updated_at, admin_token_expires_at=now + DEFAULT_TTL_SECONDS)
    )


def downgrade() -> None:
    """Drop what the upgrade added."""
    # Plain ALTER (SQLite ≥ 3.35 and PostgreSQL): a batch copy would drop `portals`, and with foreign keys on
    # that cascades to every credential.
    op.execute("ALTER TABLE portals DROP COLUMN admin_token_expires_at")
    op.execute("ALTER TABLE portals DROP COLUMN admin_token_issued_at")
    op.drop_index("ix_connect_links_expires", table_name="connect_links")
    op.drop_table("connect_links")
