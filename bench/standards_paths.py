"""One run of each path the standards issue opened, with the requests each system answered and the seconds.

Every system is an emulator served under uvicorn on loopback (real HTTP); the store is a
fresh SQLite file. Paths:

* a OneRoster 1.2 CSV bundle -> PowerTeacher Pro
* Canvas -> OneRoster 1.1 and 1.2 (REST gradebook)
* Canvas -> PowerTeacher Pro and OneRoster 1.2 in one run (two destinations)
* courseware -> Canvas over LTI AGS, then seed 002's five points per page and "recalculate and sync"

    python bench/standards_paths.py [--courses 2 --sections 2 --students 25 --assignments 12]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from passback.emulators import canvas as canvas_emulator
from passback.emulators import courseware as courseware_emulator
from passback.emulators import oneroster as oneroster_emulator
from passback.emulators import powerschool as powerschool_emulator
from passback.logs import configure_logging
from passback.pipeline.run import RunRequest, RunScope
from passback.sandbox.courseware_district import courseware_token, generate_courseware, lms_course_for
from passback.sandbox.district import DistrictShape, generate
from passback.sandbox.oneroster_bundle import write_bundle
from passback.sandbox.oneroster_district import CLIENT_ID, CLIENT_SECRET, oneroster_from_canvas
from passback.services import courseware, lti, lti_ags, matching, runs
from passback.services.connections import Route
from passback.settings import Settings
from passback.store.connections import save_connection
from passback.store.db import Store, make_engine, migrate
from passback.vault import load_key


class Served:
    """An emulator under uvicorn in a thread."""

    def __init__(self, app: Any) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def requests(self) -> int:
        return int(httpx.get(f"{self.url}/_emulator/stats").json()["total"])


def fresh_store(root: Path) -> tuple[Store, Settings]:
    settings = Settings(data_dir=root, lease_seconds=60)
    settings.ensure_data_dir()
    engine = make_engine(f"sqlite:///{root / 'passback.db'}")
    migrate(engine)
    return Store(engine), settings


def timed(label: str, served: dict[str, Served], work: Callable[[], Any]) -> Any:
    before = {name: s.requests() for name, s in served.items()}
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    sent = ", ".join(f"{name} {s.requests() - before[name]}" for name, s in served.items())
    counts = getattr(result, "counts", None) or (result[0].counts if isinstance(result, list) and result else {})
    shown = ", ".join(f"{k} {v}" for k, v in counts.items() if v) if counts else ""
    print(f"{label:<58} {seconds:6.2f} s   requests: {sent}" + (f"   [{shown}]" if shown else ""))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--courses", type=int, default=2)
    parser.add_argument("--sections", type=int, default=2)
    parser.add_argument("--students", type=int, default=25)
    parser.add_argument("--assignments", type=int, default=12)
    args = parser.parse_args()
    configure_logging("WARNING")
    shape = DistrictShape(courses=args.courses, sections=args.sections, students=args.students,
                          assignments=args.assignments, seed=7)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        canvas_state, ps_state, creds = generate(shape)
        ps_creds = {"client_id": creds.powerschool_client_id, "client_secret": creds.powerschool_client_secret}

        # 1. a OneRoster 1.2 CSV bundle -> PowerTeacher Pro
        store, settings = fresh_store(root / "csv")
        bundle = root / "bundle.zip"
        write_bundle(bundle, canvas_state, ps_state, "1.2")
        with Served(powerschool_emulator.create_app(generate(shape)[1])) as ps:
            key = load_key(settings)
            save_connection(store, key, name="roster", kind="oneroster_csv", base_url=str(bundle), credentials={})
            save_connection(store, key, name="sis", kind="powerschool", base_url=ps.url, credentials=ps_creds)
            timed("OneRoster 1.2 CSV bundle -> PowerTeacher Pro (every class)", {"powerschool": ps},
                  lambda: asyncio.run(runs.sync_courses(store, settings, Route("roster", "sis"), all_courses=True)))

        # 2 and 3. Canvas -> OneRoster (each version), and Canvas -> PowerTeacher Pro + OneRoster in one run
        for version in ("v1p1", "v1p2"):
            store, settings = fresh_store(root / f"or-{version}")
            canvas_state, ps_state, creds = generate(shape)
            with Served(canvas_emulator.create_app(canvas_state)) as canvas, \
                    Served(oneroster_emulator.create_app(oneroster_from_canvas(canvas_state))) as oneroster:
                key = load_key(settings)
                save_connection(store, key, name="lms", kind="canvas", base_url=canvas.url,
                                credentials={"token": creds.canvas_token})
                save_connection(store, key, name="or", kind="oneroster", base_url=oneroster.url,
                                credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "version": version})
                timed(f"Canvas -> OneRoster {version} (every course)", {"canvas": canvas, "oneroster": oneroster},
                      lambda: asyncio.run(runs.sync_courses(store, settings, Route("lms", "or"), all_courses=True)))
                timed("  again, nothing changed", {"canvas": canvas, "oneroster": oneroster},
                      lambda: asyncio.run(runs.sync_courses(store, settings, Route("lms", "or"), all_courses=True)))
        store, settings = fresh_store(root / "two")
        canvas_state, ps_state, creds = generate(shape)
        with Served(canvas_emulator.create_app(canvas_state)) as canvas, \
                Served(powerschool_emulator.create_app(ps_state)) as ps, \
                Served(oneroster_emulator.create_app(oneroster_from_canvas(canvas_state))) as oneroster:
            key = load_key(settings)
            save_connection(store, key, name="lms", kind="canvas", base_url=canvas.url,
                            credentials={"token": creds.canvas_token})
            save_connection(store, key, name="sis", kind="powerschool", base_url=ps.url, credentials=ps_creds)
            save_connection(store, key, name="or", kind="oneroster", base_url=oneroster.url,
                            credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "version": "v1p2"})
            timed("Canvas -> PowerTeacher Pro + OneRoster v1p2, one run", {"canvas": canvas, "powerschool": ps,
                                                                          "oneroster": oneroster},
                  lambda: asyncio.run(runs.sync_to_destinations(store, settings, "lms", ["sis", "or"], all_courses=True)))

        # 4. courseware -> Canvas over LTI AGS; seed 002's example and recalculation
        store, settings = fresh_store(root / "ags")
        canvas_state, _, creds = generate(shape)
        cw = generate_courseware(seed=21, courses=1, students=args.students, pages=6, activities=5)
        course_id = next(iter(cw["courses"]))
        with Served(canvas_emulator.create_app(canvas_state)) as canvas, \
                Served(courseware_emulator.create_app(cw)) as served_cw:
            gradebook = lms_course_for(canvas.app.state.emulator, cw, course_id)
            key = load_key(settings)
            lms = save_connection(store, key, name="lms", kind="canvas", base_url=canvas.url,
                                  credentials={"token": creds.canvas_token})
            config = lti.developer_key_json("https://grades.example")
            del config["public_jwk_url"]
            dev_key = httpx.post(f"{canvas.url}/_emulator/lti/developer_keys",
                                 json={**config, "public_jwk": lti.tool_jwks(store, settings)["keys"][0]}).json()
            platform = lti.register_platform(
                store, name="Canvas", issuer=dev_key["issuer"], client_id=dev_key["client_id"],
                auth_login_url=dev_key["auth_login_url"], auth_token_url=dev_key["auth_token_url"],
                jwks_url=dev_key["jwks_url"], deployment_ids=[dev_key["deployment_id"]], source_connection_id=lms.id)
            destination = lti_ags.save_ags_connection(store, settings, platform["id"], name="canvas-ags")
            source = save_connection(store, key, name="courseware", kind="courseware", base_url=served_cw.url,
                                     credentials={"token": courseware_token(cw)})
            route = Route("courseware", "canvas-ags")
            container = f"{canvas.url}/api/lti/courses/{gradebook}/line_items"
            for section in cw["courses"][course_id]["sections"]:
                asyncio.run(matching.override_section(store, settings, route, course_id, str(section["id"]), container))
            request = RunRequest(pipeline="gradebook", source_connection_id=source.id,
                                 destination_connection_id=destination.id, scope=RunScope(course_id=course_id))
            served = {"courseware": served_cw, "canvas": canvas}
            timed("courseware -> Canvas over LTI AGS (first sync)", served,
                  lambda: asyncio.run(runs.run(store, settings, request)))
            for page in [p for p in cw["pages"].values() if str(p["course_id"]) == course_id]:
                httpx.put(f"{served_cw.url}/api/v1/courses/{course_id}/pages/{page['id']}/points", json={"points": 5},
                          headers={"Authorization": f"Bearer {courseware_token(cw)}"})
            done = timed("  five points per page, then recalculate and sync", served,
                         lambda: asyncio.run(courseware.recalculate(store, settings, route, course_id, actor="bench")))
            print(f"  {len(done['changes'])} scores changed and sent; {len(done.get('unchanged') or [])} unchanged")


if __name__ == "__main__":
    main()
