"""The admin's forms: district settings (a bad value is refused naming the field), users and their courses."""

from __future__ import annotations

from passback.services.district import get_district
from passback.services.runs import run_options
from tests.web.conftest import DESTINATION, PASSWORD, SOURCE, Web, csrf_of


def _district_form(**changes: str) -> dict[str, str]:
    form = {"title_limit": "30", "nightly_window_start": "01:00", "nightly_window_end": "05:00",
            "time_zone": "America/Chicago", "routes": f"{SOURCE} -> {DESTINATION}", "block_closed_terms": "on"}
    return form | changes


def test_district_settings_are_saved_and_used_by_runs(web: Web) -> None:
    admin = web.client("admin")
    token = csrf_of(admin.get("/admin/district").text)
    saved = admin.post("/admin/district", data=_district_form(title_limit="25", nightly_window_start="22:30",
                                                                nightly_window_end="02:00", csrf_token=token))
    assert saved.status_code == 303
    district = get_district(web.store, web.settings)
    assert (district.title_limit, district.nightly_window_start, district.nightly_window_end) == (25, "22:30", "02:00")
    assert run_options(web.settings, web.store).district_title_limit == 25  # the next run checks names against it
    refused = admin.post("/admin/district", data=_district_form(title_limit="0", csrf_token=token))
    assert refused.status_code == 400 and "title_limit" in refused.text
    refused = admin.post("/admin/district", data=_district_form(routes=f"{SOURCE} -> nowhere", csrf_token=token))
    assert refused.status_code == 400 and "nowhere" in refused.text
    assert get_district(web.store, web.settings).title_limit == 25  # a refused form changes nothing


def test_an_admin_adds_a_teacher_and_assigns_a_course(web: Web) -> None:
    admin = web.client("admin")
    token = csrf_of(admin.get("/admin/users").text)
    short = admin.post("/admin/users", data={"username": "carol", "password": "short", "csrf_token": token})
    assert short.status_code == 400 and "12" in short.text
    added = admin.post("/admin/users", data={"username": "carol", "password": PASSWORD, "display_name": "Carol",
                                             "csrf_token": token})
    assert added.status_code == 303
    page = admin.get("/admin/users")
    carol_id = page.text.split("Carol <small>(carol)</small>")[1].split('/admin/users/')[1].split("/grant")[0]
    admin.post(f"/admin/users/{carol_id}/grant", data={"source": SOURCE, "course_id": web.courses[1],
                                                        "csrf_token": token})
    carol = web.client("carol")
    assert [c["course_id"] for c in carol.get("/api/v1/courses").json()] == [web.courses[1]]
    assert carol.get(f"/courses/{SOURCE}/{web.courses[1]}").status_code == 200
    assert carol.get(f"/courses/{SOURCE}/{web.courses[0]}").status_code == 403
