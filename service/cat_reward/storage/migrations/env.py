"""Alembic environment of the history store. It only runs online, on the connection that
``cat_reward.storage.migrate`` passes in ``config.attributes["connection"]``; the caller owns the
transaction and commits it."""

from alembic import context

from cat_reward.storage.schema import metadata

# Several service processes may start at once on an empty PostgreSQL database: they take this
# transaction-scoped lock in turn, so the second one finds the schema at head instead of failing.
PG_MIGRATION_LOCK = 0x6361745F72657764  # "cat_rewd"


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run the history migrations with cat_reward.storage.upgrade(database_url)")
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
