"""to_async_url: plain URLs get our async driver; named drivers are kept; anything else is refused."""

import pytest

from cat_reward.storage import to_async_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///relative/history.db", "sqlite+aiosqlite:///relative/history.db"),
        ("sqlite:////var/lib/cat/history.db", "sqlite+aiosqlite:////var/lib/cat/history.db"),
        ("postgresql://user:p%40ss@db.example:5433/cat", "postgresql+asyncpg://user:p%40ss@db.example:5433/cat"),
        ("postgres://user@db/cat?sslmode=require", "postgresql+asyncpg://user@db/cat?sslmode=require"),
        ("POSTGRESQL://user@db/cat", "postgresql+asyncpg://user@db/cat"),
        ("postgresql+asyncpg://user@db/cat", "postgresql+asyncpg://user@db/cat"),
        ("postgres+asyncpg://user@db/cat", "postgresql+asyncpg://user@db/cat"),
        ("postgresql+psycopg://user@db/cat", "postgresql+psycopg://user@db/cat"),
        ("sqlite+aiosqlite:///h.db", "sqlite+aiosqlite:///h.db"),
    ],
)
def test_to_async_url(url, expected):
    assert to_async_url(url) == expected


@pytest.mark.parametrize(
    "url", ["mysql://user:secret@db/cat", "redis://localhost:6379/0", "history.db", "", "://secret@db", "oracle+x://a"]
)
def test_to_async_url_refuses_other_schemes(url):
    with pytest.raises(ValueError, match="URL") as caught:
        to_async_url(url)
    assert "secret" not in str(caught.value)  # never echo credentials
