"""The product in chromium, as a teacher and an admin use it.

A teacher opens Grade Sync from the course navigation of the (emulated) Canvas: a real
LTI 1.3 launch, with the platform's signed id token verified against its JWKS. On the
course they line up the unmapped category, preview, sync, open an error, follow its fix
(the confirmation says what changes in Canvas), and sync again clean; then sync one
student. An admin signs in with a password and sees every course. What the teacher did is
checked where it landed: the emulated Canvas and PowerSchool, and the run history.
"""

from __future__ import annotations

import re
import time

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from passback.sandbox.district import LONG_NAME
from passback.sandbox.lti import connect_lti
from passback.store.history import list_runs
from tests.browser.conftest import shot
from tests.web.conftest import PASSWORD, SOURCE, Web

RUN_FINISHED = re.compile(r"succeeded|completed with errors|failed")


def _launch_as(page: Page, web: Web, login: str, course: str) -> None:
    wired = connect_lti(web.store, web.settings, canvas_url=web.district.canvas.url, passback_url=web.url)
    launch = next(item for item in wired["launches"] if item["login"] == login and item["course_id"] == course)
    page.goto(launch["url"])  # Canvas's course navigation link: login initiation, authorization, launch
    page.wait_for_url(f"{web.url}/courses/{SOURCE}/{course}")


def _gradebook_writes(web: Web) -> list[object]:
    """Assignments and scores PowerSchool accepted (a token or a lookup is not a write to the gradebook)."""
    return [w for w in web.district.powerschool.writes
            if w.method in ("POST", "PUT", "DELETE") and w.path.startswith(("/ws/xte/section/assignment", "/ws/xte/score"))]


def _tab(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Course").get_by_role("link", name=name, exact=True).click()


def _wait_for_run(page: Page, count: int) -> None:
    """Wait until the page lists ``count`` finished runs (the progress panel reloads the page when one ends)."""
    rows = page.locator("section[aria-labelledby=runs-h] tbody tr")
    expect(rows).to_have_count(count, timeout=60_000)
    expect(rows.first.locator(".status")).to_have_text(RUN_FINISHED, timeout=60_000)


def _finished_student_runs(web: Web, timeout: float = 60) -> list[dict]:  # type: ignore[type-arg]
    """The runs of one student, once one has ended (the click starts it in the server's background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in list_runs(web.store, 10) if r["scope"].get("student_id")
                and r["status"] not in ("queued", "running")]
        if runs:
            return runs
        time.sleep(0.2)
    raise AssertionError("the student's sync did not end")


def _no_axe_violations(page: Page, name: str) -> None:
    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa"]}})
    assert results.violations_count == 0, f"{name}: {results.generate_report()}"


def test_teacher_launches_maps_previews_syncs_fixes_and_resyncs(page: Page, web: Web) -> None:
    course = web.courses[0]  # the district's first course carries assignments that break seed 000's rules
    _launch_as(page, web, "teacher1", course)
    expect(page.locator("h1")).to_have_text(web.district.canvas.state["courses"][course]["name"])
    shot(page, "01-launched-grade-sync")
    _no_axe_violations(page, "Grade Sync")

    # Setup: the category that is neither imported nor mapped is lined up with a destination category
    _tab(page, "Setup")
    unmapped = page.locator("#categories tr", has=page.locator(".status.error"))
    expect(unmapped).to_have_count(1)
    unmapped.locator("select").select_option(label="Homework")
    unmapped.get_by_role("button", name="Map").click()
    expect(page.locator(".flash")).to_contain_text("now goes to Homework")
    expect(page.locator("#categories .status.error")).to_have_count(0)
    shot(page, "02-setup-categories-mapped")
    _no_axe_violations(page, "Setup")

    # Preview: what a sync would do, and nothing sent yet
    _tab(page, "Grade Sync")
    page.get_by_role("link", name="Preview").click()
    expect(page.locator("h1")).to_contain_text("Preview")
    expect(page.locator("body")).to_contain_text("Nothing has been sent")
    assert not _gradebook_writes(web)
    shot(page, "03-preview")

    # Sync now, with live progress; two errors remain (name too long, points "none")
    page.locator("#sync-after-preview").click()
    _wait_for_run(page, 1)
    first = page.locator("section[aria-labelledby=runs-h] tbody tr").first
    expect(first.locator("td.num").nth(5)).to_have_text("2")
    shot(page, "04-synced-with-errors")

    # Open the too-long name's error: its meaning, its fix, and a link to the assignment in Canvas
    error = page.locator("li.item.error", has_text=LONG_NAME)
    error.locator("summary").click()
    expect(error).to_contain_text("What it means")
    expect(error).to_contain_text("How to fix it")
    assert re.search(r"/courses/\d+/assignments/\d+$", error.get_by_role("link").get_attribute("href") or "")
    shot(page, "05-error-opened")

    # Follow the fixes on the setup page; each confirmation says what changes in Canvas
    confirmations: list[str] = []
    page.on("dialog", lambda dialog: (confirmations.append(dialog.message), dialog.accept()))
    _tab(page, "Setup")
    for _ in range(2):
        page.locator("form.fix button").first.click()
        expect(page.locator(".flash")).to_contain_text("Changed in Canvas")
    assert any("rename to" in c for c in confirmations) and any("points possible to 0" in c for c in confirmations)
    assert all(c.startswith("This will change in Canvas") for c in confirmations)
    names = {a["name"] for a in web.district.canvas.state["assignments"].values() if a["course_id"] == int(course)}
    assert LONG_NAME not in names  # renamed in Canvas itself
    shot(page, "06-fixes-applied")

    # Sync again, by keyboard: clean
    _tab(page, "Grade Sync")
    page.locator("#sync-now").focus()
    page.keyboard.press("Enter")
    _wait_for_run(page, 2)
    newest = page.locator("section[aria-labelledby=runs-h] tbody tr").first
    expect(newest.locator(".status")).to_have_text("succeeded")
    expect(newest.locator("td.num").nth(5)).to_have_text("0")
    shot(page, "07-resynced-clean")

    # The student view: sync one student
    _tab(page, "Students")
    expect(page.locator("section.student").first).to_be_visible()
    _no_axe_violations(page, "Students")
    student_button = page.locator("button.sync-student").first
    student_id = student_button.locator("xpath=..").locator("input[name=student_id]").get_attribute("value")
    student_button.click()
    runs = _finished_student_runs(web)
    assert runs[0]["scope"] == {"course_id": course, "student_id": student_id}
    assert runs[0]["actor"].startswith("lti:teacher1")
    shot(page, "08-students")


def test_admin_signs_in_and_sees_every_course(page: Page, web: Web) -> None:
    page.goto(f"{web.url}/courses")
    page.wait_for_url(re.compile(r"/login"))
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{web.url}/courses")
    for course in web.courses:
        expect(page.locator(f"a[href='/courses/{SOURCE}/{course}']")).to_have_count(1)
    shot(page, "10-admin-courses")
    for path, name in (("/admin", "admin"), ("/admin/connections", "connections"), ("/admin/district", "district"),
                       ("/admin/lti", "lti"), ("/admin/users", "users"), ("/admin/audit", "audit")):
        page.goto(web.url + path)
        expect(page.locator("h1")).to_be_visible()
        _no_axe_violations(page, path)
        shot(page, f"11-admin-{name}")
    page.goto(f"{web.url}/admin/connections")
    page.get_by_role("button", name=f"Test {SOURCE}").click()
    expect(page.locator(".flash")).to_contain_text("it works")
    assert web.district.credentials.canvas_token not in page.content()  # secrets are never shown back


def test_phone_width_has_no_sideways_scroll(browser, web: Web) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(f"{web.url}/login")
    page.get_by_label("Username").fill("teacher-a")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    for tail in ("", "/setup", "/students"):
        page.goto(f"{web.url}/courses/{SOURCE}/{web.courses[0]}{tail}")
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{tail or 'grade sync'} scrolls sideways by {overflow}px at phone width"
        shot(page, f"20-phone{tail.replace('/', '-') or '-grade-sync'}")
    context.close()
