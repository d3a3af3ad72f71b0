"""The dashboard's login behind a reverse proxy, with the real ``cat-reward serve`` (uvicorn
applying X-Forwarded-Proto/-For from CAT_FORWARDED_ALLOW_IPS): the cookie is Secure when the
proxy says https, and the cross-site check finds the browser's host in X-Forwarded-Host when
the proxy rewrote Host, but only from a trusted proxy."""

from __future__ import annotations

import httpx
import pytest

from cat_reward import cli
from cat_reward.settings import Settings
from tests.support.service import serve, stop

# What nginx sends with its defaults plus X-Forwarded-*: Host is the upstream's name.
PROXIED = {"Host": "cat_reward", "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
# A browser that sends Origin on a form's POST but not Sec-Fetch-Site.
OLD_BROWSER = {"Origin": "https://dash.example", "X-Forwarded-Host": "dash.example"}


def _login(url: str, headers: dict) -> httpx.Response:
    return httpx.post(f"{url}/ui/login", data={"key": "auditkey"}, headers=headers, timeout=30)


def _session_cookie(response: httpx.Response) -> str | None:
    found = [v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith("cat_ui_session=")]
    return found[0] if found else None


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """Two services: one trusting the loopback proxy, one trusting only a proxy that is not there."""
    running = {}
    try:
        for name, allow in (("trusting", "127.0.0.0/8"), ("distrusting", "10.9.9.9")):
            process, url, _ = serve(
                tmp_path_factory.mktemp(name), CAT_API_KEYS="auditkey:audit", CAT_FORWARDED_ALLOW_IPS=allow,
                CAT_VERIFY_WORKERS="1", CAT_LOG_LEVEL="WARNING",
            )  # fmt: skip
            running[name] = (process, url)
        yield {name: url for name, (_, url) in running.items()}
    finally:
        for process, _ in running.values():
            stop(process)


def test_behind_a_trusted_proxy_the_cookie_is_secure_and_x_forwarded_host_counts(services):
    url = services["trusting"]
    plain = _login(url, {})
    assert plain.status_code == 303 and "; secure" not in _session_cookie(plain).lower()  # http, no proxy

    browser = _login(url, PROXIED | {"Sec-Fetch-Site": "same-origin", "Origin": "https://dash.example"})
    assert browser.status_code == 303
    assert "; secure" in _session_cookie(browser).lower()  # https, as the proxy said

    old = _login(url, PROXIED | OLD_BROWSER)  # no Sec-Fetch-Site: Origin vs X-Forwarded-Host
    assert old.status_code == 303 and "; secure" in _session_cookie(old).lower()
    cross = _login(url, PROXIED | OLD_BROWSER | {"Origin": "https://evil.example"})
    assert cross.status_code == 403 and _session_cookie(cross) is None


def test_an_untrusted_peer_gets_neither_the_secure_flag_nor_x_forwarded_host(services):
    url = services["distrusting"]
    browser = _login(url, PROXIED | {"Sec-Fetch-Site": "same-origin", "Origin": "https://dash.example"})
    assert browser.status_code == 303  # Sec-Fetch-Site alone decides
    assert "; secure" not in _session_cookie(browser).lower()  # X-Forwarded-Proto ignored

    old = _login(url, PROXIED | OLD_BROWSER)
    assert old.status_code == 403 and _session_cookie(old) is None  # Host is "cat_reward", X-Forwarded-Host ignored


@pytest.mark.parametrize("workers", [1, 3])
def test_serve_passes_the_trusted_proxies_to_uvicorn(monkeypatch, workers):
    import uvicorn

    from cat_reward import observability

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    monkeypatch.setattr(observability, "configure_logging", lambda *a: None)
    tuned = []
    monkeypatch.setattr(cli, "tune_gc", tuned.append)  # not in the test process itself
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/nonexistent-unused")
    cli._serve("127.0.0.1", 8123, Settings(auth="open", forwarded_allow_ips="10.0.0.0/8,10.1.2.3"), workers)
    [(_, kwargs)] = calls
    assert kwargs["forwarded_allow_ips"] == "10.0.0.0/8,10.1.2.3"
    assert (kwargs.get("workers") or 1) == workers
    assert len(tuned) == (1 if workers == 1 else 0)  # with workers, each worker's factory tunes its own
    assert Settings(auth="open").forwarded_allow_ips == "127.0.0.1,::1"  # uvicorn's own default
