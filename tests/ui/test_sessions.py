"""The dashboard's login session over HTTP without a browser: a signed, expiring token in the
cookie (never the key), checked against the key configuration on every page; the cross-site
check behind a reverse proxy; the Secure flag; logout by POST only."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from cat_reward.api.ui.auth import SESSION_TTL_S, Sessions

from .conftest import App, text_of

pytestmark = pytest.mark.anyio

EXPIRED = "/ui/login?expired=1"


def _set_cookies(response, name="cat_ui_session") -> list[str]:
    return [v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith(name + "=")]


async def _login(client: httpx.AsyncClient, key="auditkey", **headers) -> str:
    response = await client.post("/ui/login", data={"key": key}, headers=headers)
    assert response.status_code == 303, response.text
    return client.cookies["cat_ui_session"]


async def _page_with(client: httpx.AsyncClient, token: str, path="/ui") -> httpx.Response:
    client.cookies.clear()
    return await client.get(path, headers={"Cookie": f"cat_ui_session={token}"})


def _ended(response: httpx.Response, path_next: str | None = None) -> bool:
    """Sent to the login form that says the session ended, with the cookie deleted."""
    location = response.headers.get("location", "")
    deleted = [c for c in _set_cookies(response) if "max-age=0" in c.lower()]
    wanted = EXPIRED + (f"&next={path_next}" if path_next else "")
    return response.status_code == 303 and location == wanted and len(deleted) == 1


# --- the token ----------------------------------------------------------------------------


async def test_the_cookie_is_a_signed_expiring_session_that_does_not_reveal_the_key(settings):
    async with App(settings()) as client:
        before = int(time.time())
        token = await _login(client)
        match = re.fullmatch(r"v1\.([A-Za-z0-9_-]{22})\.(\d+)\.([A-Za-z0-9_-]{43})", token)
        assert match, token
        assert before + SESSION_TTL_S <= int(match.group(2)) <= int(time.time()) + SESSION_TTL_S
        digest = hashlib.sha256(b"auditkey").hexdigest()
        revealing = ("auditkey", base64.urlsafe_b64encode(b"auditkey").decode().rstrip("="), digest, digest[:16],
                     base64.urlsafe_b64encode(bytes.fromhex(digest)).decode()[:16])  # fmt: skip
        for secret in revealing:
            assert secret not in token, secret
        assert (await _page_with(client, token)).status_code == 200

        # Two logins of the same key: the same key id, and both work (no server-side session store).
        again = await _login(client)
        assert again.split(".")[1] == token.split(".")[1]
        assert (await _page_with(client, again)).status_code == 200
        admin = await _login(client, "adminkey")
        assert admin.split(".")[1] != token.split(".")[1]


async def test_a_forged_tampered_or_expired_token_ends_the_session(settings):
    app = App(settings())
    async with app as client:
        token = await _login(client)
        version, kid, expiry, mac = token.split(".")
        other_kid = (await _login(client, "adminkey")).split(".")[1]
        flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
        keys = app.app.state.services.keys
        [train] = [k for k in keys._by_digest.values() if "rewards" in k.scopes]
        forged = {
            "tampered MAC": f"{version}.{kid}.{expiry}.{flipped}",
            "later expiry, same MAC": f"{version}.{kid}.{int(expiry) + 3600}.{mac}",
            "another key's id, same MAC": f"{version}.{other_kid}.{expiry}.{mac}",
            "another version": f"v2.{kid}.{expiry}.{mac}",
            "truncated": token[:-1],
            "empty": "",
            "garbage": "not-a-token",
            "signed with another secret": Sessions(keys, _secret("other")).issue(keys.authenticate("auditkey")),
            "expired (signed, 13 h old)": Sessions(keys, clock=lambda: time.time() - 13 * 3600).issue(
                keys.authenticate("auditkey")
            ),
            "a key without the audit scope": Sessions(keys).issue(train),  # login would have refused it
        }
        assert (await _page_with(client, Sessions(keys).issue(keys.authenticate("auditkey")))).status_code == 200
        for what, bad in forged.items():
            response = await _page_with(client, bad, "/ui/rubrics/rb_1")
            assert _ended(response, "%2Fui%2Frubrics%2Frb_1"), (what, response.status_code, response.headers)

        # The login form says why.
        page = await client.get(EXPIRED + "&next=%2Fui%2Frubrics%2Frb_1")
        assert "Your session has ended" in text_of(page.text)
        assert 'name="next" value="/ui/rubrics/rb_1"' in page.text
        assert "Your session has ended" not in (await client.get("/ui/login")).text
        # A bearer header is not a session: an unknown one is still a 401, not a redirect.
        assert (await client.get("/ui", headers={"Authorization": "Bearer nope"})).status_code == 401


def _secret(value: str):
    from pydantic import SecretStr

    return SecretStr(value)


# --- the secret and the key configuration, across replicas and restarts ---------------------


async def test_replicas_with_the_same_keys_share_sessions_and_a_key_change_ends_them(settings):
    async with App(settings()) as client:
        token = await _login(client)

    async with App(settings()) as replica:  # another replica, or the same after a restart
        assert (await _page_with(replica, token)).status_code == 200

    # Derived secret: any change of the keys ends every session, also of keys that stay.
    async with App(settings(api_keys="auditkey:audit,adminkey:admin,newkey:rewards")) as changed:
        assert _ended(await _page_with(changed, token))


async def test_with_a_shared_secret_sessions_end_when_their_key_goes_or_loses_the_audit_scope(settings):
    shared = "a shared secret of the replicas"
    async with App(settings(ui_session_secret=shared)) as client:
        audit = await _login(client)
        admin = await _login(client, "adminkey")
    async with App(settings(ui_session_secret=shared, api_keys="auditkey:audit,adminkey:admin,new:rewards")) as changed:
        assert (await _page_with(changed, audit)).status_code == 200  # the secret, not the keys, signs
        assert (await _page_with(changed, admin)).status_code == 200
    async with App(settings(ui_session_secret=shared, api_keys="adminkey:admin")) as removed:
        assert _ended(await _page_with(removed, audit))  # the key is gone after the restart
        assert (await _page_with(removed, admin)).status_code == 200
    async with App(settings(ui_session_secret=shared, api_keys="auditkey:rewards,adminkey:admin")) as rescoped:
        assert _ended(await _page_with(rescoped, audit))  # still configured, but no longer for the dashboard
    async with App(settings(ui_session_secret="another secret")) as rotated:
        assert _ended(await _page_with(rotated, audit)) and _ended(await _page_with(rotated, admin))
    async with App(settings(ui_session_secret=" ")) as blank:  # blank is unset: derived from the keys
        assert _ended(await _page_with(blank, audit))
        assert (await _page_with(blank, await _login(blank))).status_code == 200


async def test_keys_from_a_hashed_keys_file_get_sessions_too(settings, tmp_path):
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"sha256:{hashlib.sha256(b'filekey').hexdigest()} audit auditor\n")
    async with App(settings(api_keys=None, api_keys_file=keys_file)) as client:
        token = await _login(client, "filekey")
        assert "filekey" not in token and "auditor" not in token
        page = await _page_with(client, token)
        assert page.status_code == 200 and "key: auditor" in text_of(page.text)


async def test_a_cookie_from_before_sessions_is_cleared(settings):
    async with App(settings()) as client:
        response = await client.get("/ui", headers={"Cookie": "cat_ui_key=YXVkaXRrZXk"})  # the raw key, base64url
        assert response.status_code == 303 and response.headers["location"] == EXPIRED
        assert any("max-age=0" in c.lower() for c in _set_cookies(response, "cat_ui_key"))
        login = await client.post("/ui/login", data={"key": "auditkey"}, headers={"Cookie": "cat_ui_key=YXVkaXRrZXk"})
        assert any("max-age=0" in c.lower() for c in _set_cookies(login, "cat_ui_key"))


# --- behind a reverse proxy: the cross-site check --------------------------------------------


async def test_login_behind_a_proxy_that_rewrites_host(settings):
    upstream = {"Host": "cat_reward"}  # nginx's default: Host is the upstream's name
    async with App(settings()) as client:
        # A browser that sends Sec-Fetch-Site: believed, whatever Host and Origin say.
        for site in ("same-origin", "none", "Same-Origin"):
            ok = await client.post("/ui/login", data={"key": "auditkey"},
                                   headers=upstream | {"Sec-Fetch-Site": site, "Origin": "https://dash.example"})  # fmt: skip
            assert ok.status_code == 303 and _set_cookies(ok), site
        # Origin "null" (a no-referrer page of this site) passes when Sec-Fetch-Site says same-origin.
        null_same = await client.post("/ui/login", data={"key": "auditkey"},
                                      headers={"Sec-Fetch-Site": "same-origin", "Origin": "null"})  # fmt: skip
        assert null_same.status_code == 303
        for site in ("cross-site", "same-site", "bogus"):
            refused = await client.post("/ui/login", data={"key": "auditkey"},
                                        headers={"Sec-Fetch-Site": site, "Origin": "http://test"})  # fmt: skip
            assert refused.status_code == 403 and not _set_cookies(refused), site

        # A browser without Sec-Fetch-Site: Origin against X-Forwarded-Host from a trusted proxy
        # (the ASGI client is 127.0.0.1, trusted by default).
        old_browser = upstream | {"Origin": "https://dash.example", "X-Forwarded-Host": "dash.example"}
        ok = await client.post("/ui/login", data={"key": "auditkey"}, headers=old_browser)
        assert ok.status_code == 303 and _set_cookies(ok)
        listed = await client.post("/ui/login", data={"key": "auditkey"},
                                   headers=old_browser | {"X-Forwarded-Host": "Dash.Example, inner.proxy"})  # fmt: skip
        assert listed.status_code == 303  # the first (the browser's) of a list, case-insensitively
        evil = await client.post("/ui/login", data={"key": "auditkey"},
                                 headers=old_browser | {"Origin": "https://evil.example"})  # fmt: skip
        assert evil.status_code == 403
        without = await client.post("/ui/login", data={"key": "auditkey"},
                                    headers=upstream | {"Origin": "https://dash.example"})  # fmt: skip
        assert without.status_code == 403  # Host alone is the upstream's name: refused
        null = await client.post("/ui/login", data={"key": "auditkey"}, headers={"Origin": "null"})
        assert null.status_code == 403

    # X-Forwarded-Host from a peer that is not a trusted proxy is ignored.
    async with App(settings(forwarded_allow_ips="10.0.0.1,192.168.0.0/16")) as client:
        refused = await client.post("/ui/login", data={"key": "auditkey"}, headers=old_browser)
        assert refused.status_code == 403 and not _set_cookies(refused)
        direct = await client.post("/ui/login", data={"key": "auditkey"}, headers={"Origin": "http://test"})
        assert direct.status_code == 303  # Host still counts
    app = App(settings(forwarded_allow_ips="10.0.0.1,192.168.0.0/16"))
    async with app:
        proxied = httpx.AsyncClient(transport=httpx.ASGITransport(app=app.app, client=("192.168.7.2", 4000)),
                                    base_url="http://test")  # fmt: skip
        async with proxied:
            ok = await proxied.post("/ui/login", data={"key": "auditkey"}, headers=old_browser)
            assert ok.status_code == 303


# --- the Secure flag ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "scheme", "secure"),
    [(None, "http", False), (None, "https", True), (True, "http", True), (False, "https", False)],
)
async def test_the_secure_flag_follows_the_scheme_unless_forced(settings, setting, scheme, secure):
    async with App(settings(ui_cookie_secure=setting)) as client:
        login = await client.post(f"{scheme}://test/ui/login", data={"key": "auditkey"})
        [cookie] = _set_cookies(login)
        assert ("; secure" in cookie.lower()) is secure, cookie
        out = await client.post(f"{scheme}://test/ui/logout")
        [deleted] = _set_cookies(out)
        assert ("; secure" in deleted.lower()) is secure, deleted


# --- logout ---------------------------------------------------------------------------------


async def test_logout_is_a_post_of_this_site_only(settings):
    async with App(settings()) as client:
        assert (await client.post("/ui/login", data={"key": "auditkey"})).status_code == 303
        # GET (an <img src="/ui/logout"> on any site) does not log out.
        link = await client.get("/ui/logout")
        assert "set-cookie" not in link.headers
        assert link.status_code == 303 and link.headers["location"] == "/ui"
        page = await client.get("/ui")
        assert page.status_code == 200
        assert re.search(r'<form method="post" action="/ui/logout"><button type="submit" class="link">Log out</button></form>',
                         page.text)  # fmt: skip

        # A form of another site that posts here is refused, and the session stays.
        for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
            refused = await client.post("/ui/logout", headers=headers)
            assert refused.status_code == 403 and "set-cookie" not in refused.headers, headers
        assert (await client.get("/ui")).status_code == 200

        out = await client.post("/ui/logout", headers={"Sec-Fetch-Site": "same-origin", "Origin": "http://test"})
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
        assert "max-age=0" in _set_cookies(out)[0].lower()
        response = await client.get("/ui")
        assert response.status_code == 303 and response.headers["location"] == "/ui/login"  # no cookie: no "expired"
        assert parse_qs(urlsplit(response.headers["location"]).query) == {}
