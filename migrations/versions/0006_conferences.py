"""Conferences (Telemost meetings with calendar events and invitations) and restricted Yandex accounts.

Revision ID: 0006_conferences
Revises: 0005_connect (re-chained when main was merged in)
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_conferences"
down_revision = "0005_connect"
branch_labels = None
depends_on = None

# The history list's item of each row as JSON text (every public field, schemas.Conference), written when
# the row is: building 28 fields of JSON per row on every list request cost more than the rest of the
# request. SQLite computes it as a stored generated column; PostgreSQL only allows immutable generation
# expressions (json_build_object is stable), so a BEFORE trigger sets it there.
LIST_ITEM_FIELDS = (
    "id",
    "name",
    "type",
    "description",
    "start_date",
    "start_time",
    "duration_minutes",
    "timezone",
    "cohosts",
    "create_calendar_event",
    "invite_users",
    "invitees",
    "viewers",
    "live_stream_title",
    "live_stream_description",
    "waiting_room_level",
    "link",
    "watch_url",
    "telemost_id",
    "calendar_event_id",
    "status",
    "failed_step",
    "failure_code",
    "owner_id",
    "owner_name",
    "starts_at",
    "created_at",
    "updated_at",
    "crm_binding",
)
# JSON text as stored: embedded as JSON, not as a string (json(NULL) and NULL::json are null)
JSON_TEXT_FIELDS = ("cohosts", "invitees", "viewers", "crm_binding")
BOOLEAN_FIELDS = ("create_calendar_event", "invite_users")  # SQLite keeps 0/1


def _sqlite_list_item() -> str:
    pairs = []
    for name in LIST_ITEM_FIELDS:
        if name in JSON_TEXT_FIELDS:
            value = f"json({name})"
        elif name in BOOLEAN_FIELDS:
            value = f"CASE WHEN {name} THEN json('true') ELSE json('false') END"
        else:
            value = name
        pairs.append(f"'{name}', {value}")
    return f"json_object({', '.join(pairs)})"


def _postgres_list_item() -> str:
    pairs = [f"'{n}', NEW.{n}{'::json' if n in JSON_TEXT_FIELDS else ''}" for n in LIST_ITEM_FIELDS]
    return f"json_build_object({', '.join(pairs)})::text"


# The history list's total per (portal, owner), kept by the database in the transaction of every write to
# conferences (reservations, status "creating", are not listed so not counted): counting a long history on
# every list request cost as much as building the page.
SQLITE_TOTAL_TRIGGERS = (
    """CREATE TRIGGER conference_totals_insert AFTER INSERT ON conferences WHEN NEW.status != 'creating'
    BEGIN
        INSERT INTO conference_totals (portal_id, owner_id, total) VALUES (NEW.portal_id, NEW.owner_id, 1)
        ON CONFLICT (portal_id, owner_id) DO UPDATE SET total = total + 1;
    END""",
    """CREATE TRIGGER conference_totals_delete AFTER DELETE ON conferences WHEN OLD.status != 'creating'
    BEGIN
        UPDATE conference_totals SET total = total - 1 WHERE portal_id = OLD.portal_id AND owner_id = OLD.owner_id;
    END""",
    """CREATE TRIGGER conference_totals_update AFTER UPDATE OF status, portal_id, owner_id ON conferences
    BEGIN
        UPDATE conference_totals SET total = total - 1
        WHERE OLD.status != 'creating' AND portal_id = OLD.portal_id AND owner_id = OLD.owner_id;
        INSERT INTO conference_totals (portal_id, owner_id, total)
        SELECT NEW.portal_id, NEW.owner_id, 1 WHERE NEW.status != 'creating'
        ON CONFLICT (portal_id, owner_id) DO UPDATE SET total = total + 1;
    END""",
)
POSTGRES_TOTAL_FUNCTION = """CREATE FUNCTION conference_totals_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF OLD.status <> 'creating' THEN
            UPDATE conference_totals SET total = total - 1
            WHERE portal_id = OLD.portal_id AND owner_id = OLD.owner_id;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.status <> 'creating' THEN
            INSERT INTO conference_totals (portal_id, owner_id, total) VALUES (NEW.portal_id, NEW.owner_id, 1)
            ON CONFLICT (portal_id, owner_id) DO UPDATE SET total = conference_totals.total + 1;
        END IF;
    END IF;
    RETURN NULL;
END $$"""
POSTGRES_TOTAL_TRIGGER = (
    "CREATE TRIGGER conference_totals AFTER INSERT OR DELETE OR UPDATE OF status, portal_id, owner_id "
    "ON conferences FOR EACH ROW EXECUTE FUNCTION conference_totals_count()"
)


def upgrade() -> None:
    """Create the conferences table with its indexes and totals, and telemost_restrictions."""
    postgres = op.get_bind().dialect.name == "postgresql"
    list_item = (
        sa.Column("list_item", sa.Text)
        if postgres
        else sa.Column("list_item", sa.Text, sa.Computed(_sqlite_list_item(), persisted=True))
    )
    op.create_table(
        "conferences",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE"), nullable=False),
        sa.Column("owner_id", sa.Integer, nullable=False),
        sa.Column("owner_name", sa.String(255)),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("search_name", sa.String(255), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("start_date", sa.String(10)),
        sa.Column("start_time", sa.String(5)),
        sa.Column("duration_minutes", sa.Integer, nullable=False),
        sa.Column("timezone", sa.String(64)),
        sa.Column("starts_at", sa.Integer, nullable=False),
        sa.Column("ends_at", sa.Integer, nullable=False),
        sa.Column("cohosts", sa.Text, nullable=False, server_default="[]"),
        sa.Column("create_calendar_event", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("invite_users", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("invitees", sa.Text, nullable=False, server_default="[]"),
        sa.Column("viewers", sa.Text, nullable=False, server_default="[]"),
        sa.Column("live_stream_title", sa.String(1024)),
        sa.Column("live_stream_description", sa.Text),
        sa.Column("waiting_room_level", sa.String(16), nullable=False, server_default="PUBLIC"),
        sa.Column("telemost_id", sa.String(32)),
        sa.Column("link", sa.String(512)),
        sa.Column("watch_url", sa.String(512)),
        sa.Column("calendar_event_id", sa.Integer),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failed_step", sa.String(32)),
        sa.Column("failure_code", sa.String(64)),
        sa.Column("pending_notifications", sa.Text, nullable=False, server_default="[]"),
        sa.Column("idempotency_key", sa.String(128)),
        sa.Column("request_hash", sa.String(64)),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Integer, nullable=False),
        # The CRM record the conference was made from ({"entity","id"} as canonical JSON text, models/crm).
        sa.Column("crm_binding", sa.String(64)),
        list_item,
        sa.UniqueConstraint("portal_id", "owner_id", "idempotency_key", name="uq_conferences_idempotency"),
    )
    if postgres:
        op.execute(
            "CREATE FUNCTION conferences_list_item() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"NEW.list_item := {_postgres_list_item()}; RETURN NEW; END $$"
        )
        op.execute(
            "CREATE TRIGGER conferences_list_item BEFORE INSERT OR UPDATE ON conferences "
            "FOR EACH ROW EXECUTE FUNCTION conferences_list_item()"
        )
    # Covering for the history list: pages in (starts_at, id) order, count and filters on ends_at and status.
    op.create_index(
        "ix_conferences_owner_start", "conferences", ["portal_id", "owner_id", "starts_at", "id", "ends_at", "status"]
    )
    op.create_index("ix_conferences_type", "conferences", ["type"])
    op.create_index("ix_conferences_crm", "conferences", ["portal_id", "crm_binding"])
    op.create_index("ix_conferences_status", "conferences", ["status"])
    op.create_table(
        "conference_totals",
        sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("owner_id", sa.Integer, primary_key=True),
        sa.Column("total", sa.Integer, nullable=False, server_default="0"),
    )
    for statement in (POSTGRES_TOTAL_FUNCTION, POSTGRES_TOTAL_TRIGGER) if postgres else SQLITE_TOTAL_TRIGGERS:
        op.execute(statement)
    op.create_table(
        "telemost_restrictions",
        sa.Column("credential_id", sa.Integer, sa.ForeignKey("credentials.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("restricted_at", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    """Drop what the upgrade made."""
    op.drop_table("telemost_restrictions")
    op.drop_table("conference_totals")
    op.drop_index("ix_conferences_status", table_name="conferences")
    op.drop_index("ix_conferences_crm", table_name="conferences")
    op.drop_index("ix_conferences_type", table_name="conferences")
    op.drop_index("ix_conferences_owner_start", table_name="conferences")
    op.drop_table("conferences")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS conferences_list_item()")
        op.execute("DROP FUNCTION IF EXISTS conference_totals_count()")
