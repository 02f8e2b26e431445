"""Alembic environment: runs on the connection handed over by database.Database.upgrade()."""

from alembic import context
from sqlalchemy import create_engine

from database import metadata

config = context.config
target_metadata = metadata


def run_migrations_online() -> None:
    """Migrate on the given connection, or open one from the configured URL (alembic CLI)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
