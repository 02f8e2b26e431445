"""Initial schema: portals, credential vault with history, task runs, metrics, audit log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the first tables."""
    op.create_table(
        "portals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("member_id", sa.String(64), nullable=False, unique=True),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("client_endpoint", sa.String(512), nullable=False),
        sa.Column("server_endpoint", sa.String(512), nullable=False),
        sa.Column("application_token_hash", sa.String(64)),
        sa.Column("admin_token_hash", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False, server_default="installed"),
        sa.Column("app_status", sa.String(4)),
        sa.Column("scope", sa.Text),
        sa.Column("version", sa.String(32)),
        sa.Column("language", sa.String(8)),
        sa.Column("admin_user_id", sa.Integer),
        sa.Column("bot_id", sa.Integer),
        sa.Column("installed_at", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Integer, nullable=False),
        sa.Column("uninstalled_at", sa.Integer),
    )
    op.create_table(
        "credentials",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("account", sa.String(128), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE")),
        sa.Column("user_id", sa.Integer),
        sa.Column("label", sa.String(255)),
        sa.Column("endpoint", sa.String(512)),
        sa.Column("access_token_enc", sa.Text, nullable=False),
        sa.Column("refresh_token_enc", sa.Text),
        sa.Column("expires_at", sa.Integer, nullable=False),
        sa.Column("refresh_expires_at", sa.Integer),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("failure_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(64)),
        sa.Column("last_error_at", sa.Integer),
        sa.Column("unconfirmed_attempt", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("lease_owner", sa.String(96)),
        sa.Column("lease_until", sa.Float),
        sa.Column("refreshed_at", sa.Integer),
        sa.Column("last_used_at", sa.Integer),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Integer, nullable=False),
        sa.UniqueConstraint("provider", "account", "subject", name="uq_credentials_identity"),
    )
    op.create_index("ix_credentials_due", "credentials", ["status", "expires_at"])
    op.create_table(
        "credential_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "credential_id",
            sa.Integer,
            sa.ForeignKey("credentials.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("access_token_enc", sa.Text, nullable=False),
        sa.Column("refresh_token_enc", sa.Text),
        sa.Column("expires_at", sa.Integer, nullable=False),
        sa.Column("replaced_at", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(32)),
        sa.UniqueConstraint("credential_id", "version", name="uq_history_version"),
    )
    op.create_table(
        "task_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.String(36), nullable=False, unique=True),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(16)),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("duration_ms", sa.Integer),
        sa.Column("report", sa.Text),
    )
    op.create_table(
        "metric_counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("labels", sa.String(255), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.Integer, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255)),
        sa.Column("detail", sa.Text),
    )


def downgrade() -> None:
    """Drop everything the upgrade made."""
    for table in ("audit_log", "metric_counters", "task_runs", "credential_history", "credentials", "portals"):
        op.drop_table(table)
