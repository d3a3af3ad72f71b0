"""Audit history of computed rewards: a durable local outbox in front of a SQL database.

``HistoryStore.record`` only writes to a local SQLite file, so rewards keep flowing when the
database is down; a background task moves the outbox into the ``reward_records`` table.
Nothing here imports the web layer, so the app wires it in and maps ``StoreUnavailable``.
"""

from .engine import to_async_url
from .migrate import upgrade
from .store import HistoryStore, StoreUnavailable

__all__ = ["HistoryStore", "StoreUnavailable", "to_async_url", "upgrade"]
