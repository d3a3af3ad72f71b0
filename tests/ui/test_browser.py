"""The audit dashboard end to end in headless Chromium (Debian's ``chromium``, driven by
Playwright; ``scripts/ensure-browser`` installs it): the real service as a process with API
keys, a stub LLM whose judge grades, groups posted over HTTP, then login, filters, a rubric page
and a run plot, checked in the DOM and in full-page screenshots.

Set ``UI_SCREENSHOT_DIR`` (e.g. ``docs/ui``) to also keep the rubric-page and run-plot
screenshots there; otherwise they stay in the test's temporary directory."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageStat
from playwright.sync_api import Page, sync_playwright

from tests.support.service import serve, stop

from .graded_stub import CRITERIA, GradedStub, p_yes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WIDTH = 1280
RUN = "ui-e2e"
STEPS = range(6)
SCRIPT_ROLLOUT = "<script>document.title='pwned';alert('xss')</script> The sum is \\boxed{5}."
GARBLED_ROLLOUT = "[garble] 2 + 3 is 5, I believe: \\boxed{5}"
# The stylesheet's verdict colours (ui.css --met-bg, --unmet-bg, --failed-bg).
MET_BG, UNMET_BG, FAILED_BG = (0xCF, 0xEE, 0xD6), (0xF9, 0xD3, 0xD0), (0xE4, 0xE4, 0xE4)


def _rollouts(step: int, group: int) -> list[str]:
    return [
        f"Step {step}: 2 + 3 = 5, so the answer is \\boxed{{5}}.",
        f"I add {group + 2} and 3 and get \\boxed{{{group + 5}}}.",
        "Five." if (step + group) % 2 else "2 plus 3 makes 5; boxed: \\boxed{5}",
        f"Not sure ({step}.{group}); maybe 6?",
    ]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The service with keys (audit / rewards) against the graded stub, and 12 scored groups of
    one run over steps 0-5; one group at step 2 has a script rollout and a garbled verdict."""
    workdir = tmp_path_factory.mktemp("ui-e2e")
    with GradedStub() as stub:
        process, url, log = serve(
            workdir,
            CAT_API_KEYS="auditkey:audit,trainkey:rewards",
            CAT_ANCHOR_BASE_URL=stub.url,
            CAT_ANCHOR_MODEL="stub-anchor",
            CAT_JUDGE_MODEL="stub-judge",
            CAT_LOG_LEVEL="WARNING",
        )
        try:
            ids, special = [], None
            with httpx.Client(base_url=url, timeout=60, headers={"Authorization": "Bearer trainkey"}) as http:
                for step in STEPS:
                    for group in range(2):
                        rollouts = _rollouts(step, group)
                        if (step, group) == (2, 1):
                            rollouts[1], rollouts[3] = SCRIPT_ROLLOUT, GARBLED_ROLLOUT
                        body = {"prompt": f"What is 2 + 3? (step {step}, prompt {group})", "rollouts": rollouts,
                                "mode": "rubric", "metadata": {"run_id": RUN, "step": step, "group_id": f"g{group}"}}  # fmt: skip
                        response = http.post("/rewards", json=body)
                        assert response.status_code == 200, response.text
                        ids.append(response.json()["record_id"])
                        if (step, group) == (2, 1):
                            special = response.json()
            audit = {"Authorization": "Bearer auditkey"}
            deadline = time.monotonic() + 60
            while len(httpx.get(f"{url}/rubrics", params={"run_id": RUN}, headers=audit).json()["items"]) < len(ids):
                assert time.monotonic() < deadline, "the records did not reach the history database"
                time.sleep(0.2)
            yield {"url": url, "ids": ids, "special": special, "log": log}
        finally:
            stop(process)
    assert "Traceback" not in log.read_text()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/ensure-browser installs Debian's chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, site):
    """A fresh context (no cookies) and page; fails the test on a console error (a CSP
    violation is one), a script error, or any dialog (a script that ran)."""
    context = browser.new_context(viewport={"width": WIDTH, "height": 800}, device_scale_factor=1)
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    problems: list[str] = []

    def console(message) -> None:
        # An error status is logged as a failed load; those pages (401, 403) are what the test asks for.
        if message.type == "error" and not message.text.startswith("Failed to load resource: the server responded"):
            problems.append(f"console {message.type}: {message.text}")

    tab.on("console", console)
    tab.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    yield tab
    context.close()
    assert problems == []


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


def login(page: Page, url: str, key: str) -> None:
    page.goto(f"{url}/ui/login")
    page.fill("#key", key)
    page.click("form.login-form button[type=submit]")
    page.wait_for_load_state()


def check_screenshot(path: Path, *, min_height: int = 400) -> Image.Image:
    """A real picture of a page: a PNG of the viewport's width, of many colours, not flat."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        rgb = image.convert("RGB")
    assert rgb.width == WIDTH and rgb.height >= min_height, rgb.size
    colours = rgb.getcolors(maxcolors=1 << 22)
    assert len(colours) >= 50, len(colours)
    assert max(ImageStat.Stat(rgb).stddev) > 15
    return rgb


def pixels_near(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 3) -> int:
    return sum(
        count
        for count, rgb in image.getcolors(maxcolors=1 << 22)
        if all(abs(a - b) <= tolerance for a, b in zip(rgb, colour))
    )


def keep(path: Path, name: str) -> None:
    target = os.environ.get("UI_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / name)


def test_login_with_scopes_then_logout(page, site, shots):
    url = site["url"]
    page.goto(f"{url}/ui")
    assert page.url == f"{url}/ui/login"  # no key: the login form
    assert page.locator("h1").text_content() == "Audit dashboard"
    page.screenshot(path=shots / "login.png", full_page=True)
    check_screenshot(shots / "login.png", min_height=300)

    login(page, url, "trainkey")
    assert page.locator("h1").text_content() == "This key cannot open the audit dashboard"
    assert "has: rewards" in page.locator("p.message").text_content()
    assert not page.context.cookies()

    login(page, url, "not-a-key")
    assert page.locator(".form-error").text_content() == "Unknown API key."

    login(page, url, "auditkey")
    assert page.url == f"{url}/ui"
    assert page.locator("h1").text_content() == "Rubric history"
    [cookie] = page.context.cookies()
    assert (cookie["name"], cookie["path"], cookie["httpOnly"], cookie["sameSite"]) == ("cat_ui_session", "/ui", True, "Strict")
    assert cookie["value"].startswith("v1.") and "auditkey" not in cookie["value"]  # a session, not the key
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script could read it

    page.goto(f"{url}/ui/logout")  # a GET (a link, an image of another site) does not log out
    assert page.url == f"{url}/ui" and page.context.cookies()
    page.click("header .who button")  # the nav's Log out posts a form
    assert page.url == f"{url}/ui/login" and not page.context.cookies()
    page.goto(f"{url}/ui")
    assert page.url == f"{url}/ui/login"
    assert page.locator("p.notice").count() == 0


def test_a_tampered_or_expired_session_asks_to_log_in_again(page, site):
    url = site["url"]
    login(page, url, "auditkey")
    [cookie] = page.context.cookies()
    version, kid, expiry, mac = cookie["value"].split(".")
    page.context.add_cookies([cookie | {"value": f"{version}.{kid}.{int(expiry) + 86400}.{mac}"}])  # longer: forged
    page.goto(f"{url}/ui?run_id={RUN}")
    assert page.url == f"{url}/ui/login?expired=1&next=%2Fui%3Frun_id%3D{RUN}"
    assert "Your session has ended" in page.locator("p.notice").text_content()
    assert not page.context.cookies()  # deleted
    page.fill("#key", "auditkey")
    page.click("form.login-form button[type=submit]")
    page.wait_for_load_state()
    assert page.url == f"{url}/ui?run_id={RUN}"  # back where it was


def test_history_filters_by_run_and_step(page, site, shots):
    url = site["url"]
    login(page, url, "auditkey")
    rows = page.locator("table.history tbody tr")
    assert rows.count() == len(site["ids"])
    assert rows.locator("td:nth-child(3)").all_text_contents() == [str(s) for s in STEPS for _ in range(2)][::-1]

    page.fill("input[name=run_id]", RUN)
    page.fill("input[name=step]", "2")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state()
    assert "run_id=ui-e2e" in page.url and "step=2" in page.url
    assert rows.count() == 2
    assert set(rows.locator("td:nth-child(3)").all_text_contents()) == {"2"}
    assert page.locator("p.run-link a").get_attribute("href") == f"/ui/runs/{RUN}"
    assert page.evaluate("(s => s.scrollWidth <= s.clientWidth)(document.querySelector('div.scroll'))")  # fits
    page.screenshot(path=shots / "history.png", full_page=True)
    check_screenshot(shots / "history.png")

    page.fill("input[name=step]", "99")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state()
    assert rows.count() == 0 and "No records match" in page.locator("p.empty").text_content()


def test_rubric_page_matrix_rewards_and_escaping(page, site, shots):
    url, special = site["url"], site["special"]
    login(page, url, "auditkey")
    page.goto(f"{url}/ui?run_id={RUN}&step=2")
    page.click(f"a.record[href='/ui/rubrics/{special['record_id']}']")
    page.wait_for_load_state()
    assert page.url == f"{url}/ui/rubrics/{special['record_id']}"
    sent = _rollouts(2, 1)
    sent[1], sent[3] = SCRIPT_ROLLOUT, GARBLED_ROLLOUT

    matrix = page.locator("table.matrix").first
    assert matrix.locator("thead th.rollout").all_text_contents() == ["#0", "#1", "#2", "#3"]  # columns: rollouts
    body_rows = matrix.locator("tbody tr")
    assert body_rows.count() == len(special["rubric"]) == len(CRITERIA)  # rows: criteria
    states = set()
    for r, criterion in enumerate(special["rubric"]):
        row = body_rows.nth(r)
        assert criterion["text"] in row.locator("th").text_content()
        cells = row.locator("td.cell")
        assert cells.count() == 4
        for i in range(4):
            cell = cells.nth(i)
            state = cell.get_attribute("class").split()[-1]
            text = " ".join(cell.text_content().split())
            states.add(state)
            if i == 3 and criterion["text"] == CRITERIA[1]:  # the stub garbles this one: no verdict
                assert state == "failed" and text == "failed –"
                continue
            expected = p_yes(sent[i], criterion["text"])  # what the stub's logprobs said
            assert text == f"{'met' if expected >= 0.5 else 'unmet'} {expected:.2f}", (r, i, text)
            assert state == ("met" if expected >= 0.5 else "unmet")
    assert states == {"met", "unmet", "failed"}
    rewards = matrix.locator("tr.rewards td.reward").all_text_contents()
    assert rewards == ["–" if v is None else f"{v:.2f}" for v in special["rewards"]]
    assert special["rewards"][3] is None and len(special["details"]) == 4

    # The script rollout is on the page as text, and nothing ran.
    card = page.locator("#rollout-1 pre.text")
    assert card.text_content() == SCRIPT_ROLLOUT and card.is_visible()
    assert page.evaluate("document.scripts.length") == 0
    assert page.title() != "pwned" and special["record_id"] in page.title()
    assert page.locator("#rollout-3 .form-error").count() == 1  # why its reward is null

    page.screenshot(path=shots / "rubric.png", full_page=True)
    check_screenshot(shots / "rubric.png", min_height=900)
    keep(shots / "rubric.png", "rubric.png")
    matrix.screenshot(path=shots / "matrix.png")
    with Image.open(shots / "matrix.png") as image:
        cells = image.convert("RGB")
    for colour in (MET_BG, UNMET_BG, FAILED_BG):
        assert pixels_near(cells, colour) > 300, colour


def test_run_plot_has_one_box_per_step(page, site, shots):
    url = site["url"]
    login(page, url, "auditkey")
    page.goto(f"{url}/ui?run_id={RUN}")
    page.click("p.run-link a")
    page.wait_for_load_state()
    assert page.url == f"{url}/ui/runs/{RUN}"
    plot = page.locator("svg#rewards-plot")
    assert plot.is_visible()
    marks = plot.locator("g.step")
    assert [marks.nth(i).get_attribute("data-step") for i in range(marks.count())] == [str(s) for s in STEPS]
    centres = [box["x"] + box["width"] / 2 for box in (plot.locator("rect.box").nth(i).bounding_box() for i in STEPS)]
    assert centres == sorted(centres) and len(set(centres)) == len(STEPS)  # left to right by step
    assert plot.locator("circle.mean").count() == len(STEPS)
    assert page.locator("table.steps tbody tr").count() == len(STEPS)
    assert re.search(r"12 groups in 6 steps", page.locator("p.aside").first.text_content())

    page.screenshot(path=shots / "run.png", full_page=True)
    image = check_screenshot(shots / "run.png", min_height=700)
    keep(shots / "run.png", "run.png")
    plot.screenshot(path=shots / "plot.png")
    with Image.open(shots / "plot.png") as shot:
        assert pixels_near(shot.convert("RGB"), (0xBC, 0xD0, 0xF2)) > 200  # the boxes' fill
    assert image.height > 700

    marks.nth(2).click()  # a box links to its step's records
    page.wait_for_load_state()
    assert "step=2" in page.url and page.locator("table.history tbody tr").count() == 2
