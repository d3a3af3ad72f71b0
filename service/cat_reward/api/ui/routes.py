"""The dashboard's pages: ``/ui`` (history), ``/ui/rubrics/{id}`` (one record), ``/ui/runs/{run}``
(rewards over training steps), and ``/ui/login`` / ``/ui/logout``.

They read the history through the same ``HistoryStore`` as ``GET /rubrics``; none is in the
OpenAPI document, which describes the JSON API.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ...rewarding import prompt_hash as hash_prompt
from ...storage import StoreUnavailable
from .auth import (
    COOKIE,
    LEGACY_COOKIE,
    UIExit,
    Viewer,
    clear_session_cookie,
    cross_site,
    login_url,
    rate_limit,
    safe_next,
    sessions,
    set_session_cookie,
)
from .rendering import error_page, page
from .views import record_view, rewards_plot, summary_row

router = APIRouter(prefix="/ui", include_in_schema=False)

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
PLOT_RECORDS = 5000  # records read for one run plot; later steps are one link away
LOGIN_BODY_MAX = 16 * 1024
INT64 = 2**63


# --- who is looking -----------------------------------------------------------------------


def _bearer(request: Request) -> str | None:
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _too_many(request: Request, wait: int, viewer: Viewer | None) -> HTMLResponse:
    return error_page(
        request, 429, "Too many requests",
        f"This key is over its rate limit (CAT_RATE_LIMIT_PER_MINUTE). Try again in {wait} s.",
        viewer=viewer, headers={"Retry-After": str(wait)},
    )  # fmt: skip


def _forbidden(request: Request, key) -> HTMLResponse:
    scopes = "+".join(sorted(key.scopes))
    return error_page(
        request, 403, "This key cannot open the audit dashboard",
        f"The dashboard needs an API key with the 'audit' (or 'admin') scope; this key ({key.name}) has: {scopes}.",
    )  # fmt: skip


def _session_ended(request: Request) -> UIExit:
    """An expired, forged or outdated session cookie (or one naming a key that is gone or lost
    its audit scope): the login form, saying so, and the cookie deleted."""
    response = RedirectResponse(login_url(request, expired=True), status_code=303)
    clear_session_cookie(response, request)
    return UIExit(response)


async def current_viewer(request: Request) -> Viewer:
    """Every dashboard page's guard. Open mode: everyone (rate-limited as "anonymous", like the
    API). Keys: a bearer header with the ``audit`` scope, or a valid session cookie; without
    either a browser is sent to the login form."""
    services = request.app.state.services
    if services.keys is None:
        viewer = Viewer(None, False)
        wait = await rate_limit(request, "anonymous")
        if wait is not None:
            raise UIExit(_too_many(request, wait, viewer))
        return viewer
    token = _bearer(request)
    if token is not None:
        key = services.keys.authenticate(token)
        if key is None:
            raise UIExit(
                error_page(request, 401, "Unknown API key", "The bearer key is not one of the configured keys.",
                           headers={"WWW-Authenticate": "Bearer"})
            )  # fmt: skip
        if not key.allows("audit"):
            raise UIExit(_forbidden(request, key))
    else:
        cookie = request.cookies.get(COOKIE)
        if cookie is None:
            if LEGACY_COOKIE in request.cookies:  # a key cookie from before sessions: log in again
                raise _session_ended(request)
            raise UIExit(RedirectResponse(login_url(request), status_code=303))
        key = sessions(request).verify(cookie)
        if key is None:
            raise _session_ended(request)
    viewer = Viewer(key.name, True)
    wait = await rate_limit(request, key.name)
    if wait is not None:
        raise UIExit(_too_many(request, wait, viewer))
    return viewer


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


def _history(request: Request, viewer: Viewer):
    history = request.app.state.services.history
    if history is None:
        raise UIExit(
            error_page(request, 404, "No audit history", "This service runs without an audit history, so there is "
                       "nothing to show here.", viewer=viewer)
        )  # fmt: skip
    return history


def _unavailable(request: Request, viewer: Viewer, exc: StoreUnavailable) -> UIExit:
    return UIExit(
        error_page(
            request, 503, "The history database is unreachable",
            f"Rewards are still served and recorded (they wait in the outbox), but the history cannot be read "
            f"right now. Try again in a few seconds. ({exc})",
            viewer=viewer, headers={"Retry-After": "5"},
        )  # fmt: skip
    )


# --- login and logout ---------------------------------------------------------------------


def _login_form(request: Request, *, status: int = 200, error: str | None = None, next_url: str = "/ui"):
    expired = request.query_params.get("expired") == "1"
    return page(request, "login.html", status=status, error=error, next_url=safe_next(next_url), expired=expired)


@router.get("/login")
async def login_form(request: Request):
    if request.app.state.services.keys is None:
        return RedirectResponse("/ui", status_code=303)
    return _login_form(request, next_url=request.query_params.get("next") or "/ui")


@router.post("/login")
async def login(request: Request):
    services = request.app.state.services
    if services.keys is None:
        return RedirectResponse("/ui", status_code=303)
    if cross_site(request):
        return error_page(request, 403, "Cross-site login refused", "The login form must be posted from this site.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > LOGIN_BODY_MAX:
            return error_page(request, 413, "Request too large", "The login form is a single API key.")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        fields = {}
    key_text = (fields.get("key") or [""])[0].strip()
    next_url = safe_next((fields.get("next") or ["/ui"])[0])
    if not key_text:
        return _login_form(request, status=401, error="Enter an API key.", next_url=next_url)
    key = services.keys.authenticate(key_text)
    if key is None:
        return _login_form(request, status=401, error="Unknown API key.", next_url=next_url)
    if not key.allows("audit"):
        return _forbidden(request, key)
    wait = await rate_limit(request, key.name)
    if wait is not None:
        return _too_many(request, wait, None)
    response = RedirectResponse(next_url, status_code=303)
    set_session_cookie(response, request, sessions(request).issue(key))
    return response


@router.post("/logout")
async def logout(request: Request):
    if cross_site(request):
        return error_page(request, 403, "Cross-site logout refused", "Log out with the dashboard's own button.")
    open_mode = request.app.state.services.keys is None
    response = RedirectResponse("/ui" if open_mode else "/ui/login", status_code=303)
    clear_session_cookie(response, request)
    return response


@router.get("/logout")
async def logout_link(request: Request):
    """Not a way to log out: any page of any site can make a browser GET a URL (an image)."""
    return RedirectResponse("/ui", status_code=303)


# --- pages --------------------------------------------------------------------------------


def _int(value: str | None, name: str, *, lo: int = -INT64, hi: int = INT64 - 1) -> tuple[int | None, str | None]:
    """A query parameter as an integer; ("" or absent) -> None; else (None, an error message)."""
    if value is None or not value.strip():
        return None, None
    try:
        number = int(value.strip())
    except ValueError:
        return None, f"{name} must be a whole number, not {value!r}."
    if not lo <= number <= hi:
        return None, f"{name} must be between {lo} and {hi}."
    return number, None


def _url(path: str, **params) -> str:
    kept = {k: v for k, v in params.items() if v is not None and v != ""}
    return path + (f"?{urlencode(kept)}" if kept else "")


@router.get("")
async def history_page(request: Request, viewer: ViewerDep):
    q = request.query_params
    filters = {
        "prompt": q.get("prompt") or "",
        "prompt_hash": (q.get("prompt_hash") or "").strip(),
        "run_id": q.get("run_id") or "",
        "step": (q.get("step") or "").strip(),
    }
    step, step_error = _int(filters["step"], "Step")
    limit, limit_error = _int(q.get("limit"), "Limit", lo=1, hi=MAX_PAGE_SIZE)
    cursor = q.get("cursor") or None
    errors = [e for e in (step_error, limit_error) if e]
    if filters["prompt"] and filters["prompt_hash"]:
        errors.append("Filter by the prompt text or by its hash, not both.")
    context = dict(viewer=viewer, filters=filters, rows=[], errors=errors, next_url=None, newest_url=None,
                   outbox_depth=0, run_url=None, filtered=any(filters.values()))  # fmt: skip
    if filters["run_id"]:
        context["run_url"] = f"/ui/runs/{quote(filters['run_id'], safe='')}"
    if errors:
        return page(request, "history.html", status=422, **context)
    history = _history(request, viewer)
    wanted = hash_prompt(filters["prompt"]) if filters["prompt"] else (filters["prompt_hash"] or None)
    try:
        records, next_cursor = await history.list(
            prompt_hash=wanted, run_id=filters["run_id"] or None, step=step, limit=limit or PAGE_SIZE, cursor=cursor
        )
    except ValueError:
        context["errors"] = ["This page link is broken (its cursor is not one the service issued); start from the newest."]
        context["newest_url"] = _url("/ui", **filters)
        return page(request, "history.html", status=422, **context)
    except StoreUnavailable as exc:
        raise _unavailable(request, viewer, exc) from exc
    context["rows"] = [summary_row(r) for r in records]
    if next_cursor is not None:
        context["next_url"] = _url("/ui", **filters, limit=limit, cursor=next_cursor)
    if cursor is not None:
        context["newest_url"] = _url("/ui", **filters, limit=limit)
    depth = getattr(history, "outbox_depth", None)
    context["outbox_depth"] = depth() if callable(depth) else 0
    return page(request, "history.html", **context)


@router.get("/")
async def history_slash(request: Request):
    return RedirectResponse(_url("/ui", **dict(request.query_params)), status_code=308)


@router.get("/rubrics/{record_id}")
async def record_page(record_id: str, request: Request, viewer: ViewerDep):
    history = _history(request, viewer)
    try:
        record = await history.get(record_id)
    except StoreUnavailable as exc:
        raise _unavailable(request, viewer, exc) from exc
    if record is None:
        return error_page(
            request, 404, "No such record",
            f"There is no record with the id {record_id!r}. Ids are the record_id (or rubric_id) of POST /rewards "
            "responses; the history lists them all.",
            viewer=viewer,
        )  # fmt: skip
    return page(request, "rubric.html", viewer=viewer, **record_view(record))


@router.get("/runs/{run_id:path}")
async def run_page(run_id: str, request: Request, viewer: ViewerDep):
    if not run_id:
        return error_page(request, 404, "No run given", "Open a run from the history: filter by a run id.", viewer=viewer)
    from_step, error = _int(request.query_params.get("from"), "from")
    if error:
        return error_page(request, 422, "Bad step", error, viewer=viewer)
    history = _history(request, viewer)
    try:
        rows, next_step, truncated = await history.run_rewards(run_id, from_step=from_step, limit=PLOT_RECORDS)
    except StoreUnavailable as exc:
        raise _unavailable(request, viewer, exc) from exc
    here = f"/ui/runs/{quote(run_id, safe='')}"
    return page(
        request, "run.html", viewer=viewer, run_id=run_id, plot=rewards_plot(rows), records=len(rows),
        from_step=from_step, next_url=_url(here, **{"from": next_step}) if next_step is not None else None,
        first_url=here if from_step is not None else None,
        history_url=_url("/ui", run_id=run_id), truncated=truncated,
        truncated_url=_url("/ui", run_id=run_id, step=truncated["step"]) if truncated else None,
    )  # fmt: skip


@router.get("/{rest:path}")
async def not_found(rest: str, request: Request, viewer: ViewerDep):
    return error_page(request, 404, "Page not found", f"There is no dashboard page at {request.url.path}.", viewer=viewer)
