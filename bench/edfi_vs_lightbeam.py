"""passback against lightbeam, sending the same posted grades to the same Ed-Fi emulator.

For each latency (0 ms and 20 ms by default) each tool gets a fresh emulator holding the
same generated district, sends N grades (default 20,000) once, then again with nothing
changed. Both run in their own process through a small driver that starts the clock
after the tool's imports and stops it when the send returns, so neither is charged for
Python start-up. lightbeam gets the same records as JSONL, ``pool_size`` equal to
passback's concurrency, and a state directory (its md5 hashlog) for the unchanged send.

Prints a table (tool, run, latency, records, requests, seconds, records/s, and at a
non-zero latency the latency-bound minimum records x latency / concurrency), the goals,
and last the line ``ratio passback/lightbeam: X`` for the full send at 0 ms.

    python bench/edfi_vs_lightbeam.py [--grades 20000] [--concurrency 8] [--latencies 0,20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from passback.convert.edfi import grade_records
from passback.model import GradingPeriod, SectionAssociation
from passback.sandbox.edfi_district import PERIOD, SCHOOL_ID, SCHOOL_YEAR, SESSION, EdFiShape, default_preferences, generate
from passback.connectors.csv_export.source import write_export

LIGHTBEAM_DRIVER = textwrap.dedent("""
    import json, sys, time
    import lightbeam.__main__ as entry
    started = time.perf_counter()
    try:
        entry.main(sys.argv[1:])
    except SystemExit:
        pass
    print(json.dumps({"seconds": time.perf_counter() - started}))
""")
PASSBACK_DRIVER = textwrap.dedent("""
    import asyncio, json, sys, time
    from passback.settings import Settings
    from passback.services.statereport import report
    from passback.store import open_store
    # the connectors are opened lazily; imported before the clock, as lightbeam's own modules are
    import passback.connectors.csv_export.source, passback.connectors.edfi.destination
    settings = Settings(data_dir=sys.argv[1], concurrency=int(sys.argv[2]))
    store = open_store(settings)
    started = time.perf_counter()
    result = asyncio.run(report(store, settings, "sis-export", "state-edfi"))
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "counts": result.counts, "requests": result.stats.get("requests", {}),
                      "phases": result.stats.get("phases")}))
""")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Emulator:
    def __init__(self, state_file: Path, latency_ms: float) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "passback.sandbox.serve", "edfi", "--port", str(self.port), "--state",
             str(state_file), "--latency-ms", str(latency_ms), "--flush-seconds", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/_emulator/stats", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the Ed-Fi emulator did not start")

    def writes(self) -> tuple[int, int]:
        requests = httpx.get(f"{self.url}/_emulator/stats").json()["requests"]
        total = sum(requests.values())
        return total, sum(v for k, v in requests.items() if k.startswith(("POST /data", "PUT", "DELETE")))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def lightbeam_records(grades: list[Any]) -> list[str]:
    prefs = default_preferences()
    period = GradingPeriod(descriptor=PERIOD + "First Semester", name="First Semester", school_id=str(SCHOOL_ID),
                           school_year=SCHOOL_YEAR, begin=date(2026, 8, 10), end=date(2026, 12, 18))
    lines = []
    for grade in grades:
        association = SectionAssociation(student_id=grade.student_id, section_id=grade.section_id,
                                         local_course_code=grade.section_id.split("-")[0], school_id=str(SCHOOL_ID),
                                         school_year=SCHOOL_YEAR, session_name=SESSION, begin_date=date(2026, 8, 10))
        lines += [json.dumps(r) for r in grade_records(grade, prefs, association, [period])]
    return lines


def run_lightbeam(work: Path, url: str, concurrency: int, force: bool) -> float:
    config = work / "lightbeam.yaml"
    config.write_text(textwrap.dedent(f"""
        state_dir: {work / 'lb-state'}
        data_dir: {work / 'lb-data'}/
        edfi_api:
          base_url: {url}
          version: 3
          mode: sandbox
          client_id: sandbox-edfi
          client_secret: sandbox-edfi-secret
        connection:
          pool_size: {concurrency}
          timeout: 60
          num_retries: 3
          backoff_factor: 1.5
          retry_statuses: [429, 500, 502, 503, 504]
          verify_ssl: False
        log_level: WARNING
    """))
    args = ["send", "-c", str(config), "-s", "grades", "--results-file", str(work / "lb-results.json")]
    done = subprocess.run([sys.executable, "-c", LIGHTBEAM_DRIVER, *args, *(["-f"] if force else [])],
                          capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def run_passback(work: Path, concurrency: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", PASSBACK_DRIVER, str(work / "pb-data"), str(concurrency)],
                          capture_output=True, text=True, check=True, env={**os.environ, "PASSBACK_LOG_LEVEL": "ERROR"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def connect_passback(work: Path, url: str, export: Path, concurrency: int) -> None:
    from passback.store import open_store
    from passback.store.connections import save_connection
    from passback.settings import Settings
    from passback.vault import load_key

    settings = Settings(data_dir=work / "pb-data", concurrency=concurrency)
    store = open_store(settings)
    key = load_key(settings)
    prefs = default_preferences()
    save_connection(store, key, name="state-edfi", kind="edfi", base_url=url,
                    credentials={"client_id": "sandbox-edfi", "client_secret": "sandbox-edfi-secret"},
                    settings={"grades": {"grade_types": prefs.grade_types,
                                         "grading_periods": {k: list(v) for k, v in prefs.grading_periods.items()},
                                         "state_codes": prefs.state_codes, "school_years": sorted(prefs.school_years)}})
    save_connection(store, key, name="sis-export", kind="csv", base_url=str(export), credentials={})
    store.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grades", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latencies", default="0,20")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="edfi-bench-"))
    state, grades = generate(EdFiShape(grades=args.grades))
    (root / "ods.json").write_text(json.dumps(state))
    export = root / "grades.csv"
    write_export(export, grades)
    lines = lightbeam_records(grades)
    rows: list[dict[str, Any]] = []
    try:
        for latency in (float(x) for x in args.latencies.split(",")):
            for tool in ("lightbeam", "passback"):
                work = root / f"{tool}-{latency:g}"
                (work / "lb-data").mkdir(parents=True)
                (work / "lb-data" / "grades.jsonl").write_text("\n".join(lines) + "\n")
                shutil.copy(root / "ods.json", work / "ods.json")
                emulator = Emulator(work / "ods.json", latency)
                try:
                    if tool == "passback":
                        connect_passback(work, emulator.url, export, args.concurrency)
                    for label in ("full send", "nothing changed"):
                        before, before_writes = emulator.writes()
                        if tool == "lightbeam":
                            seconds = run_lightbeam(work, emulator.url, args.concurrency, force=False)
                        else:
                            ran = run_passback(work, args.concurrency)
                            seconds = ran["seconds"]
                            print(f"passback {label} at {latency:g} ms, phases: {ran.get('phases')}")
                        after, after_writes = emulator.writes()
                        rows.append({"tool": tool, "run": label, "latency": latency, "records": len(lines),
                                     "requests": after - before, "writes": after_writes - before_writes,
                                     "seconds": seconds})
                finally:
                    emulator.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.grades} posted grades, {len(lines)} Ed-Fi records, concurrency {args.concurrency}")
    print("| tool | run | latency | records | requests | writes | seconds | records/s | latency-bound min s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        bound = row["records"] * row["latency"] / 1000 / args.concurrency if row["latency"] else None
        rate = row["records"] / row["seconds"] if row["writes"] else 0
        print(f"| {row['tool']} | {row['run']} | {row['latency']:g} ms | {row['records']} | {row['requests']} | "
              f"{row['writes']} | {row['seconds']:.3f} | {rate:.0f} | {'-' if bound is None else f'{bound:.2f}'} |")

    def pick(tool: str, run: str, latency: float) -> dict[str, Any] | None:
        return next((r for r in rows if r["tool"] == tool and r["run"] == run and r["latency"] == latency), None)

    for latency in sorted({r["latency"] for r in rows}):
        full, again = pick("passback", "full send", latency), pick("passback", "nothing changed", latency)
        if full and again:
            share = again["seconds"] / full["seconds"]
            print(f"passback at {latency:g} ms: unchanged re-send {again['writes']} writes in "
                  f"{share:.2%} of the full send's time (goal: 0 writes, <= 2%)")
        if full and latency:
            bound = full["records"] * latency / 1000 / args.concurrency
            print(f"passback at {latency:g} ms: {full['seconds'] / bound:.3f} x the latency-bound minimum (goal <= 1.1)")
    ours, theirs = pick("passback", "full send", 0.0), pick("lightbeam", "full send", 0.0)
    if ours and theirs:
        print(f"ratio passback/lightbeam: {ours['seconds'] / theirs['seconds']:.3f}")


if __name__ == "__main__":
    main()
