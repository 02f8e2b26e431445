"""Open Lines bot: settings and lines per portal, the events inbox, hand-offs, dialogs and their messages.

Revision ID: 0007_openlines
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_openlines"
down_revision = "0006_conferences"  # chained after the conferences branch at merge (the lead re-chains all)
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the bot's tables."""
    op.create_table(
        "bot_settings",
        sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("greeting", sa.Text),
        sa.Column("timezone", sa.String(64)),
        # "operator" = imopenlines.bot.session.operator; "queue" = …transfer to queue_id.
        sa.Column("transfer_mode", sa.String(16), nullable=False, server_default="operator"),
        sa.Column("queue_id", sa.String(32)),
        sa.Column("bot_registered_version", sa.String(32)),
        sa.Column("session_finish_bound", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.Integer, nullable=False),
    )
    op.create_table(
        "bot_lines",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE"), nullable=False),
        sa.Column("line_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255)),
        sa.Column("attached_at", sa.Integer),
        # JSON {"mon": [["09:00", "18:00"]], …}; NULL = open round the clock.
        sa.Column("schedule", sa.Text),
        sa.Column("out_of_hours_text", sa.Text),
        sa.Column("out_of_hours_action", sa.String(16), nullable=False, server_default="queue"),
        sa.Column("updated_at", sa.Integer, nullable=False),
        sa.UniqueConstraint("portal_id", "line_id", name="uq_bot_lines_line"),
    )
    op.create_table(
        "bot_inbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE"), nullable=False),
        # Deduplicates deliveries: Bitrix24 may deliver the same event twice; the second insert is refused.
        sa.Column("event_key", sa.String(128), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.String(96)),
        sa.Column("lease_until", sa.Float),
        sa.Column("last_error", sa.String(64)),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("processed_at", sa.Float),
        sa.UniqueConstraint("portal_id", "event_key", name="uq_bot_inbox_key"),
    )
    op.create_index("ix_bot_inbox_ready", "bot_inbox", ["status", "next_attempt_at"])
    op.create_table(
        "bot_handoffs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE"), nullable=False),
        sa.Column("chat_key", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("notice_sent", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("method", sa.String(64)),
        sa.Column("outcome", sa.String(64)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(96)),
        sa.Column("lease_until", sa.Float),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("done_at", sa.Integer),
        sa.UniqueConstraint("portal_id", "chat_key", name="uq_bot_handoffs_chat"),
    )
    op.create_table(
        "dialogs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE"), nullable=False),
        sa.Column("chat_id", sa.BigInteger, nullable=False),
        sa.Column("dialog_id", sa.String(64), nullable=False),
        sa.Column("line_id", sa.String(32)),
        sa.Column("connector", sa.String(64)),
        sa.Column("entity_id", sa.String(255)),
        sa.Column("client_id", sa.String(64)),
        sa.Column("client_name", sa.String(255)),
        sa.Column("crm_bindings", sa.Text),
        sa.Column("language", sa.String(8)),
        sa.Column("first_message", sa.Text),
        sa.Column("status", sa.String(16), nullable=False, server_default="new"),
        sa.Column("transfer_outcome", sa.String(64)),
        sa.Column("transferred_at", sa.Integer),
        sa.Column("out_of_hours", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("session_id", sa.String(32)),
        sa.Column("finished_at", sa.Integer),
        sa.Column("history_fetched_at", sa.Integer),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Integer, nullable=False),
        sa.Column("last_message_at", sa.Integer),
        sa.UniqueConstraint("portal_id", "chat_id", name="uq_dialogs_chat"),
    )
    op.create_index("ix_dialogs_portal_created", "dialogs", ["portal_id", "created_at"])
    op.create_table(
        "dialog_messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dialog_pk", sa.Integer, sa.ForeignKey("dialogs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("author_kind", sa.String(16), nullable=False),
        sa.Column("author_id", sa.String(64)),
        sa.Column("text", sa.Text),
        sa.Column("sent_at", sa.Integer, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.UniqueConstraint("dialog_pk", "message_id", name="uq_dialog_messages_id"),
    )


def downgrade() -> None:
    """Drop the bot's tables."""
    for table in ("dialog_messages", "dialogs", "bot_handoffs", "bot_inbox", "bot_lines", "bot_settings"):
        op.drop_table(table)
