"""The ``passback`` command: sandbox, connections, sync, run history, error catalogue.

Every command that reports something also takes ``--json`` and then prints one JSON
document on standard output and nothing else, for scripts and schedulers.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from passback.errors import Invalid, PassbackError
from passback.logs import configure_logging
from passback.pipeline.plan import Plan, Scope
from passback.pipeline.run import RunResult
from passback.sandbox.control import ALL_SYSTEMS as ALL_SANDBOX_SYSTEMS
from passback.sandbox.connect import save_sandbox_connections
from passback.sandbox.control import Sandbox, parse_systems
from passback.sandbox.control import SYSTEMS as SANDBOX_SYSTEMS
from passback.sandbox.district import DistrictShape
from passback.services import connections as connection_service
from passback.services import matching as matching_service
from passback.services import statereport as state_service
from passback.services.connections import Route
from passback.services.history import catalogue, explain_run, recent_runs
from passback.services.engine import queue_courses, queued_dispatch, wait_for_runs
from passback.services.runs import sync_courses, sync_to_destinations
from passback.services.sandbox_state import SANDBOX_DESTINATION, SANDBOX_SOURCE, forget_sandbox_state
from passback.services.views import (
    COULD_NOT_RUN,
    demo_view,
    exit_code,
    readiness_view,
    score_details,
    state_run_view,
    sync_view,
)
from passback.settings import Settings, get_settings
from passback.store import open_store
from passback.store.connections import list_connections
from passback.store.history import OUTCOMES
from passback.services.setup import (
    apply_fixes,
    check_course,
    import_categories,
    link_assignment,
    list_categories,
    map_category,
    set_switch,
    unlink_assignment,
    unmap_category,
)

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Grade passback: from where teachers grade to the systems of record.")
sandbox_app = typer.Typer(no_args_is_help=True, help="The sandbox district (emulated Canvas and PowerSchool).")
runs_app = typer.Typer(help="Run history: what each sync did, item by item.", invoke_without_command=True)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(runs_app, name="runs")

console = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)



def _emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def os_user() -> str:
    """Who started a command-line run: the operating system's user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return f"uid {os.getuid()}"


@contextmanager
def _friendly_errors():  # type: ignore[no-untyped-def]
    try:
        yield
    except PassbackError as exc:  # every error passback means to show: one line; the command could not run
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(COULD_NOT_RUN) from exc


def _show_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import PackageNotFoundError, version

        try:
            shown = version("passback")
        except PackageNotFoundError:  # run from a source tree that was not installed
            from passback import __version__ as shown
        console.print(f"passback {shown}")
        raise typer.Exit(0)


@app.callback()
def main(
    show_version: bool = typer.Option(False, "--version", is_eager=True, callback=_show_version,
                                      help="Print passback's version and exit."),
) -> None:
    configure_logging()


# --- sandbox ----------------------------------------------------------------------------


def _shape(courses: int, sections: int, students: int, assignments: int, seed: int) -> DistrictShape:
    return DistrictShape(courses=courses, sections=sections, students=students, assignments=assignments, seed=seed)


CoursesOpt = typer.Option(3, min=1, help="Courses in the generated district.")
SectionsOpt = typer.Option(2, min=1, help="Sections per course.")
StudentsOpt = typer.Option(25, min=1, help="Students per section.")
AssignmentsOpt = typer.Option(12, min=1, help="Assignments per course.")
SeedOpt = typer.Option(7, help="Random seed: the same seed gives the same district.")


@sandbox_app.command("up")
def sandbox_up(
    courses: int = CoursesOpt, sections: int = SectionsOpt, students: int = StudentsOpt,
    assignments: int = AssignmentsOpt, seed: int = SeedOpt,
    latency_ms: float = typer.Option(0.0, help="Latency added to every emulated request."),
    fault_rate: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of requests answered with a fault."),
    fault_kinds: str = typer.Option("429,500", help="Faults to inject: 429, 500, timeout, reset."),
    systems: str = typer.Option(",".join(SANDBOX_SYSTEMS), "--systems",
                                help=f"Which emulators to serve, of {', '.join(ALL_SANDBOX_SYSTEMS)}."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Start the emulators (generating the district the first time) and save a connection to each."""
    settings = get_settings()
    with _friendly_errors():
        sandbox = Sandbox(settings.ensure_data_dir())
        info, started = sandbox.up(_shape(courses, sections, students, assignments, seed), latency_ms, fault_rate,
                                   fault_kinds, systems=parse_systems(systems))
        saved = save_sandbox_connections(settings, info, sandbox)
    summary = {"started": started, **{system: info.url(system) for system in info.systems}, "shape": info.shape,
               "connections": saved}
    if "edfi" in info.systems:
        summary["sample_export"] = str(sandbox.sample_export)
    if json_out:
        _emit_json(summary)
        return
    console.print(("Started" if started else "Already running") + ": " +
                  ", ".join(f"{system} at {info.url(system)}" for system in info.systems))
    console.print("Connections: " + ", ".join(f"{name} ({kind})" for name, kind in saved.items()))
    if "edfi" in info.systems:
        console.print(f"A sample posted-grades export: {sandbox.sample_export} (connection sis-export); try "
                      "`passback edfi sync --dry-run`.")


@sandbox_app.command("lti")
def sandbox_lti(url: str = typer.Option("http://127.0.0.1:8000", help="Where `passback serve` listens."),
                json_out: bool = typer.Option(False, "--json")) -> None:
    """Register passback as an LTI 1.3 tool in the sandbox's Canvas, and that Canvas as a platform here."""
    from passback.sandbox.lti import connect_lti

    settings = get_settings()
    sandbox = Sandbox(settings.ensure_data_dir())
    info = sandbox.load()
    if info is None or "canvas" not in info.systems or not sandbox.running(info, ("canvas",)):
        err.print("error: the sandbox's Canvas is not running; start it with `passback sandbox up`.")
        raise typer.Exit(COULD_NOT_RUN)
    with _friendly_errors():
        wired = connect_lti(open_store(settings), settings, canvas_url=info.url("canvas"), passback_url=url)
    if json_out:
        _emit_json({k: v for k, v in wired.items() if k != "platform"})
        return
    console.print(f"Canvas's developer key {wired['client_id']} (deployment {wired['deployment_id']}) launches {url}.")
    console.print("Open Grade Sync from a course's navigation, as its teacher:")
    for launch in wired["launches"]:
        console.print(f"  {launch['login']} ({launch['role']}), course {launch['course_id']}: {launch['url']}")


@sandbox_app.command("down")
def sandbox_down() -> None:
    """Stop the emulators; their data stays for the next `sandbox up`."""
    stopped = Sandbox(get_settings().data_dir).down()
    console.print("Stopped." if stopped else "The sandbox was not running.")


@sandbox_app.command("reset")
def sandbox_reset(
    courses: int = CoursesOpt, sections: int = SectionsOpt, students: int = StudentsOpt,
    assignments: int = AssignmentsOpt, seed: int = SeedOpt,
) -> None:
    """Stop the emulators and generate the district afresh (what passback wrote is gone)."""
    settings = get_settings()
    Sandbox(settings.ensure_data_dir()).reset(_shape(courses, sections, students, assignments, seed))
    forget_sandbox_state(open_store(settings))
    console.print("The sandbox district was generated afresh; run `passback demo` or `passback sandbox up`.")


# --- connections ----------------------------------------------------------------------------


def _secret(value: str | None, env_name: str | None, option: str) -> str | None:
    """A secret given directly, or read from the environment variable named (kept out of shell history)."""
    if env_name is None:
        return value
    found = os.environ.get(env_name)
    if not found:
        raise Invalid(f"{option} names the environment variable {env_name}, which is not set (or empty). "
                      f"Set it first: export {env_name}=...")
    return found


@app.command("connect")
def connect(
    kind: str = typer.Argument(..., help="canvas, schoology, courseware, oneroster_csv (sources); powerschool, "
                                         "oneroster, lti_ags (gradebooks); edfi; csv (posted grades)"),
    name: str = typer.Option(..., help="A name to refer to this connection by."),
    url: str = typer.Option(..., help="Base URL, e.g. https://district.instructure.com (csv: the export's path)."),
    token: str = typer.Option(None, help="Canvas access token.", envvar="PASSBACK_CONNECT_TOKEN"),
    token_env: str = typer.Option(None, "--token-env", metavar="VAR", help="Read the Canvas token from this variable."),
    client_id: str = typer.Option(None, help="PowerSchool plugin client id, or Ed-Fi key."),
    client_secret: str = typer.Option(None, help="PowerSchool plugin client secret, or Ed-Fi secret.",
                                      envvar="PASSBACK_CONNECT_CLIENT_SECRET"),
    client_secret_env: str = typer.Option(None, "--client-secret-env", metavar="VAR",
                                          help="Read the client secret from this variable."),
    consumer_key: str = typer.Option(None, help="Schoology API consumer key."),
    consumer_secret: str = typer.Option(None, help="Schoology API consumer secret.",
                                        envvar="PASSBACK_CONNECT_CONSUMER_SECRET"),
    consumer_secret_env: str = typer.Option(None, "--consumer-secret-env", metavar="VAR",
                                            help="Read the Schoology consumer secret from this variable."),
    oneroster_version: str = typer.Option(None, "--oneroster-version", help="OneRoster: v1p1 (default) or v1p2."),
    token_url: str = typer.Option(None, "--token-url", help="OneRoster: the provider's OAuth 2 token URL, when it "
                                                             "is not {url}/oauth/token."),
    replace: bool = typer.Option(False, "--replace", help="Save over the connection of this name."),
    no_check: bool = typer.Option(False, "--no-check", help="Save without trying the URL and credentials first."),
) -> None:
    """Save a connection after one real request shows its URL and credentials work; credentials are encrypted."""
    settings = get_settings()
    with _friendly_errors():
        given = {"token": _secret(token, token_env, "--token-env"), "client_id": client_id,
                 "client_secret": _secret(client_secret, client_secret_env, "--client-secret-env"),
                 "consumer_key": consumer_key,
                 "consumer_secret": _secret(consumer_secret, consumer_secret_env, "--consumer-secret-env"),
                 "version": oneroster_version, "token_url": token_url}
        store = open_store(settings)
        checked = None if no_check else asyncio.run(connection_service.probe(kind, url, given, settings))
        connection_service.save(store, settings, name=name, kind=kind, url=url, credentials=given, replace=replace)
    console.print(f"Saved connection {name!r} ({kind}, {url})" + (f": {checked}." if checked else ", not checked."))


connections_app = typer.Typer(help="Saved connections: list them (never their secrets), remove one.",
                               invoke_without_command=True)
app.add_typer(connections_app, name="connections")


@connections_app.command("remove")
def connections_remove(name: str = typer.Argument(..., help="The connection's name.")) -> None:
    """Remove a connection with no run history, and what passback kept for it alone."""
    with _friendly_errors():
        connection_service.remove(open_store(get_settings()), name)
    console.print(f"Removed connection {name!r}.")


@connections_app.callback()
def connections_cmd(ctx: typer.Context, json_out: bool = typer.Option(False, "--json")) -> None:
    """List saved connections (never their secrets)."""
    if ctx.invoked_subcommand is not None:
        return
    rows = list_connections(open_store(get_settings()))
    if json_out:
        _emit_json(rows)
        return
    table = Table("name", "kind", "url")
    for row in rows:
        table.add_row(row["name"], row["kind"], row["base_url"])
    console.print(table)


# --- sync -------------------------------------------------------------------------------------


def _print_plan(plan: Plan, details: bool = False) -> None:
    table = Table("assignment", "action", "scores to write", "reason", title=f"Plan for course {plan.course_id}")
    for step in plan.steps:
        writes = sum(s.action in ("create", "update", "delete") for s in step.scores)
        reason = step.findings[0].message if step.findings else ""
        table.add_row(f"{step.assignment_id} {step.name}", step.action, str(writes), reason)
    console.print(table)
    if details:
        _print_score_details(plan)


def _shown_value(value: dict[str, Any] | None) -> str:
    if not value:
        return "blank"
    if value.get("exempt"):
        return "exempt"
    shown = "blank" if value.get("points") is None else f"{value['points']:g}"
    return shown + "".join(f" ({flag})" for flag in ("late", "missing") if value.get(flag))


def _print_score_details(plan: Plan) -> None:
    """Each grade the run would write, with what the destination was last given: --details."""
    table = Table("assignment", "student", "section", "action", "would write", "last written", "reason",
                  title=f"Grades for course {plan.course_id}")
    for step in plan.steps:
        for row in score_details(step):
            if row.action == "unchanged":
                continue
            table.add_row(step.assignment_id, row.student_id, row.dest_section_id or "", row.action,
                          _shown_value(row.value) if row.value is not None else "",
                          _shown_value(row.previous) if row.previous is not None else "", row.reason or "")
    console.print(table)


def _run_with_progress(coro_factory, quiet: bool, doing: str = "syncing", unit: str = "assignments"):  # type: ignore[no-untyped-def]
    if quiet:
        return asyncio.run(coro_factory(None))
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn(unit), TimeElapsedColumn(), console=err, transient=False) as bar:
        task = bar.add_task(doing, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return asyncio.run(coro_factory(progress))


@app.command("sync")
def sync_cmd(
    course: list[str] = typer.Option(None, "--course", help="Course id in the source (repeatable)."),
    all_courses: bool = typer.Option(False, "--all", help="Every course the source connection sees."),
    assignment: str = typer.Option(None, help="Only this assignment (source id)."),
    student: str = typer.Option(None, help="Only this student (source id)."),
    source: str = typer.Option(SANDBOX_SOURCE, help="Source connection name."),
    destination: list[str] = typer.Option(
        None, "--destination", help="Destination connection name (repeatable: one run to every destination named)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; write nothing."),
    details: bool = typer.Option(False, "--details", help="With --dry-run: every grade it would write."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Send the source's grade even where the destination's was changed by hand."),
    wait: float = typer.Option(0.0, "--wait", min=0.0, metavar="SECONDS",
                               help="When another run is syncing the course, wait up to this long for it."),
    full: bool = typer.Option(False, "--full",
                              help="Read every score, not only what changed since the last run (a reconciliation)."),
    queue: bool = typer.Option(False, "--queue",
                               help="Hand each course to the workers (passback worker) as a queued run, and return."),
    follow: float = typer.Option(0.0, "--follow", min=0.0, metavar="SECONDS",
                                 help="With --queue: wait up to this long for the queued runs to end, and show them."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Sync a course, one assignment of it, or one student of it."""
    if queue:
        _queue(course, all_courses, source, destination, full, follow, json_out)
        return
    if not course and not all_courses:
        err.print("error: name a course with --course ID, or use --all.")
        raise typer.Exit(COULD_NOT_RUN)
    if (assignment or student) and (all_courses or len(course) != 1):
        err.print("error: --assignment and --student need exactly one --course.")
        raise typer.Exit(COULD_NOT_RUN)
    settings = get_settings()
    store = open_store(settings)
    scopes = [Scope(course_id=c, assignment_id=assignment, student_id=student) for c in course or []]
    destinations: list[str | int] = list(dict.fromkeys(destination or [SANDBOX_DESTINATION]))
    with _friendly_errors():
        results = _run_with_progress(
            lambda progress: sync_to_destinations(
                store, settings, source, destinations, scopes, all_courses=all_courses,
                dry_run=dry_run, overwrite_drift=overwrite, wait_seconds=wait, actor=os_user(),
                progress=progress, full_read=full),
            quiet=json_out or dry_run,
        )
    if json_out:
        _emit_json(sync_view(results, details=details).shown())
    else:
        for result in results:
            if result.status == "dry_run" and result.plan is not None:
                _print_plan(result.plan, details)
            _print_result(result)
    raise typer.Exit(exit_code(results))


def _queue(course: list[str] | None, all_courses: bool, source: str, destination: list[str] | None, full: bool,
           follow: float, json_out: bool) -> None:
    """A district sync fanned out over the workers: one queued run per course."""
    from passback.worker.tasks import enqueue  # the broker's client is loaded only when it is used

    if not course and not all_courses:
        err.print("error: name a course with --course ID, or use --all.")
        raise typer.Exit(COULD_NOT_RUN)
    if destination and len(destination) > 1:
        err.print("error: --queue sends to one destination; queue each destination in its own command.")
        raise typer.Exit(COULD_NOT_RUN)
    settings = get_settings()
    store = open_store(settings)
    route = Route(source, (destination or [SANDBOX_DESTINATION])[0])
    scopes = [Scope(course_id=c) for c in course or []]
    with _friendly_errors():
        run_ids = asyncio.run(queue_courses(store, settings, route, scopes, all_courses=all_courses, actor=os_user(),
                                            full_read=full, dispatch=enqueue))
        if follow:
            finished = asyncio.run(wait_for_runs(store, run_ids, timeout=follow))
        else:
            finished = None
    if json_out:
        _emit_json({"queued": run_ids, "runs": finished})
    elif finished is None:
        console.print(f"{len(run_ids)} run(s) queued for the workers: {', '.join(r[:8] for r in run_ids)}")
    else:
        for row in finished:
            counts = ", ".join(f"{k} {v}" for k, v in (row["counts"] or {}).items())
            console.print(f"[bold]{row['id'][:8]}[/bold] {row['status']}: {counts}")
    if finished is not None and any(r["status"] in ("queued", "running") for r in finished):
        raise typer.Exit(COULD_NOT_RUN)


def _print_result(result: RunResult) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    label = result.run_id[:8] if result.run_id else "dry run"
    line = f"[bold]{label}[/bold] {result.status}: {counts}"
    if result.failure:
        line += f"\n  [red]{result.failure}[/red]"
    console.print(line)


# --- demo ---------------------------------------------------------------------------------------


@app.command("demo")
def demo(
    courses: int = CoursesOpt, sections: int = SectionsOpt, students: int = StudentsOpt,
    assignments: int = AssignmentsOpt, seed: int = SeedOpt,
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Sandbox up, connect, sync every course, print the run summary."""
    settings = get_settings()
    sandbox = Sandbox(settings.ensure_data_dir())
    started_at = time.perf_counter()
    with _friendly_errors():
        info, started = sandbox.up(_shape(courses, sections, students, assignments, seed))
        try:
            save_sandbox_connections(settings, info, sandbox)
            store = open_store(settings)
            results = _run_with_progress(
                lambda progress: sync_courses(
                    store, settings, Route(SANDBOX_SOURCE, SANDBOX_DESTINATION), all_courses=True,
                    trigger="manual", actor=os_user(), progress=progress),
                quiet=json_out,
            )
        finally:
            if started:
                sandbox.down()
    seconds = round(time.perf_counter() - started_at, 3)
    summary = demo_view(results, seconds, ("canvas", "powerschool")).model_dump(mode="json")
    if json_out:
        _emit_json(summary)
        raise typer.Exit(exit_code(results))
    table = Table("course", "run", "status", *OUTCOMES, title="passback demo")
    for r, row in zip(results, summary["runs"], strict=True):
        table.add_row(str(row["course_id"]), (r.run_id or "")[:8], r.status, *(str(r.counts[k]) for k in OUTCOMES))
    table.add_row("all", "", "", *(str(summary["counts"][k]) for k in OUTCOMES), style="bold")
    console.print(table)
    console.print(f"Requests: Canvas {summary['requests']['canvas']}, PowerSchool {summary['requests']['powerschool']}; "
                  f"{seconds} s in all.")
    if summary["counts"]["error"]:
        first = next(r for r in results if r.counts.get("error"))
        console.print(f"Errors, with meaning and fix: passback runs show {first.run_id[:8]}")
    raise typer.Exit(exit_code(results))


# --- history ---------------------------------------------------------------------------------


@runs_app.callback()
def runs_list(ctx: typer.Context, limit: int = typer.Option(20, help="How many runs."),
              json_out: bool = typer.Option(False, "--json")) -> None:
    """Recent runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    rows = recent_runs(open_store(get_settings()), limit)
    if json_out:
        _emit_json(rows)
        return
    table = Table("run", "started", "trigger", "scope", "status", *OUTCOMES)
    for row in rows:
        table.add_row(row["id"][:8], row["started_at"].strftime("%Y-%m-%d %H:%M:%S"), row["trigger"],
                      " ".join(f"{k}={v}" for k, v in row["scope"].items()), row["status"],
                      *(str(row["counts"].get(k, 0)) for k in OUTCOMES))
    console.print(table)


@runs_app.command("show")
def runs_show(
    run: str = typer.Argument(..., help="Run id (or its first characters)."),
    outcome: list[str] = typer.Option(None, help="Only items with this outcome (repeatable)."),
    all_items: bool = typer.Option(False, "--all", help="Every item, not only errors and skips."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """One run: its counts and every error or skip with meaning and fix."""
    wanted = tuple(outcome) if outcome else (None if all_items else ("error", "skipped"))
    with _friendly_errors():
        shown = explain_run(open_store(get_settings()), run, wanted)
    found, explained = shown["run"], shown["items"]
    if json_out:
        _emit_json(shown)
        return
    grouped: dict[str, list[dict[str, Any]]] = {}
    if not (outcome or all_items):
        for item in [i for i in explained if i["outcome"] == "skipped"]:
            grouped.setdefault(item.get("code") or "", []).append(item)
        explained = [i for i in explained if i["outcome"] != "skipped"]
    console.print(f"[bold]Run {found['id']}[/bold]  {found['status']}  trigger {found['trigger']}  "
                  f"started {found['started_at']:%Y-%m-%d %H:%M:%S}")
    console.print("  " + ", ".join(f"{k} {found['counts'].get(k, 0)}" for k in OUTCOMES))
    for part in shown.get("parts", []):  # a run to several destinations: one line per destination
        console.print(f"  to {part['destination']}: {part['status']} (run {part['run_id'][:8]}), "
                      + ", ".join(f"{k} {part['counts'].get(k, 0)}" for k in OUTCOMES))
    if found.get("failure"):
        console.print(f"  [red]{found['failure']}[/red]")
    for item in explained:
        colour = "red" if item["outcome"] == "error" else "yellow"
        head = f"[{colour}]{item['outcome']}[/{colour}] {item['object_kind']} {item['source_id']}"
        if item.get("destination"):
            head += f"  to {item['destination']}"
        if item.get("code"):
            head += escape(f"  [{item['code']}" + (f", seed error {item['seed_error']}" if item.get("seed_error") else "") + "]")
        console.print(head)
        if item.get("message"):
            console.print(f"    message: {escape(item['message'])}")
        if item.get("meaning"):
            console.print(f"    meaning: {item['meaning']}")
            console.print(f"    fix:     {item['fix']}")
        if item.get("link"):
            console.print(f"    open:    {item['link']}")
    for code, skipped in grouped.items():
        sample = skipped[0]
        console.print(f"[yellow]skipped[/yellow] {len(skipped)} item(s)  " + escape(f"[{code}]"))
        console.print(f"    e.g.:    {escape(sample.get('message') or '')}")
        if sample.get("meaning"):
            console.print(f"    meaning: {sample['meaning']}")
            console.print(f"    fix:     {sample['fix']}")
    if grouped:
        console.print(f"Every skipped item: passback runs show {found['id'][:8]} --outcome skipped")


# --- users of the web product ----------------------------------------------------------------------

users_app = typer.Typer(no_args_is_help=True,
                        help="People who sign in to the web product: add them, list them, API tokens, courses.")
app.add_typer(users_app, name="users")


@users_app.command("add")
def users_add(
    username: str = typer.Argument(..., help="The name to sign in with."),
    admin: bool = typer.Option(False, "--admin", help="A district admin: every course, the district's settings."),
    name: str = typer.Option(None, "--name", help="The name shown (default: the username)."),
    password_env: str = typer.Option(None, "--password-env", metavar="VAR",
                                     help="Read the password from this variable (else it is asked for, twice)."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Add a user who signs in with a password of at least 12 characters."""
    from passback.services import accounts as account_service

    with _friendly_errors():
        store = open_store(get_settings())
        if account_service.get_user_by_username(store, username) is not None:  # say so before asking for a password
            raise account_service.UsernameTaken(f"A user named {username!r} exists already; choose another username.")
        password = _secret(None, password_env, "--password-env") if password_env else \
            typer.prompt("Password (12 characters or more)", hide_input=True, confirmation_prompt=True, err=True)
        user = account_service.add_user(store, username=username, display_name=name, password=password, is_admin=admin)
    if json_out:
        _emit_json(user)
        return
    console.print(f"Added user {escape(user['username'])}" + (" (admin)" if user["is_admin"] else "") + ".")


@users_app.command("list")
def users_list(json_out: bool = typer.Option(False, "--json")) -> None:
    """Every user (never a password or its hash)."""
    from passback.services import accounts as account_service

    with _friendly_errors():
        rows = account_service.list_users(open_store(get_settings()))
    if json_out:
        _emit_json(rows)
        return
    table = Table("username", "name", "admin", "password", "LTI", "disabled", "created")
    for row in rows:
        table.add_row(escape(row["username"]), escape(row["display_name"]), "yes" if row["is_admin"] else "",
                      "set" if row["has_password"] else "", escape(row["lti_issuer"] or ""),
                      "yes" if row["disabled"] else "", f"{row['created_at']:%Y-%m-%d}")
    console.print(table)


@users_app.command("token")
def users_token(
    username: str = typer.Argument(..., help="The user the token acts as."),
    name: str = typer.Option(..., "--name", help="What uses the token, e.g. nightly-export."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Issue an API token for scripts; it is printed this once (passback keeps only its hash)."""
    from passback.services import accounts as account_service

    with _friendly_errors():
        store = open_store(get_settings())
        user = account_service.require_user(store, username)
        token = account_service.issue_token(store, user_id=user["id"], name=name)
    if json_out:
        _emit_json({"username": user["username"], "name": name, "token": token})
        return
    sys.stdout.write(token + "\n")
    err.print("This token is shown only now: passback keeps only its hash. Store it where the script reads it.")


@users_app.command("grant")
def users_grant(
    username: str = typer.Argument(..., help="The user who may see the course."),
    course: str = typer.Option(..., "--course", help="Course id in the source."),
    source: str = typer.Option(..., "--source", help="Source connection name."),
    role: str = typer.Option("Instructor", "--role",
                             help="Instructor, TeachingAssistant, Administrator or Learner (sees no grades)."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Let a user see and sync a course of a source connection (again: changes the role)."""
    from passback.services import accounts as account_service

    with _friendly_errors():
        store = open_store(get_settings())
        user = account_service.require_user(store, username)
        granted = account_service.grant_course(
            store, user_id=user["id"], source_connection_id=account_service.source_connection_id(store, source),
            course_id=course, role=role, granted_by=os_user())
    if json_out:
        _emit_json({"username": user["username"], **granted})
        return
    console.print(f"{escape(user['username'])} may now see course {escape(course)} of {escape(source)} as {role}.")


# --- catalogue ---------------------------------------------------------------------------------


@app.command("errors")
def errors_cmd(json_out: bool = typer.Option(False, "--json")) -> None:
    """The error catalogue: every reason an item does not sync, with meaning and fix."""
    rows = catalogue()
    if json_out:
        _emit_json(rows)
        return
    table = Table("code", "seed", "outcome", "meaning", "fix", show_lines=True)
    for row in rows:
        table.add_row(row["code"], str(row["seed_error"] or ""), row["outcome"], row["meaning"], row["fix"])
    console.print(table)


# --- setup: categories, links, switches, readiness -----------------------------------------------

categories_app = typer.Typer(no_args_is_help=True, help="Category import and mapping per course.")
app.add_typer(categories_app, name="categories")
SourceOpt = typer.Option(SANDBOX_SOURCE, "--source", help="Source connection name.")
DestinationOpt = typer.Option(SANDBOX_DESTINATION, "--destination", help="Destination connection name.")
CourseOpt = typer.Option(..., "--course", help="Course id in the source.")


def _setup_call(coro):  # type: ignore[no-untyped-def]
    with _friendly_errors():
        return asyncio.run(coro)


def _ctx(source: str, destination: str):  # type: ignore[no-untyped-def]
    settings = get_settings()
    return open_store(settings), settings, Route(source, destination)


@categories_app.command("import")
def categories_import(course: str = CourseOpt, source: str = SourceOpt, destination: str = DestinationOpt,
                      json_out: bool = typer.Option(False, "--json")) -> None:
    """Create the destination's categories in the source course, named exactly, marked imported."""
    report = _setup_call(import_categories(*_ctx(source, destination), course, actor=os_user()))
    if json_out:
        _emit_json(report)
        return
    for row in report:
        console.print(f"{row['status']:>32}  {row['category']}  (source category {row['source_category_id']})")


@categories_app.command("list")
def categories_list(course: str = CourseOpt, source: str = SourceOpt, destination: str = DestinationOpt,
                    json_out: bool = typer.Option(False, "--json")) -> None:
    """Each category of the course, where it goes, and every mapping problem with its fix."""
    report = _setup_call(list_categories(*_ctx(source, destination), course))
    if json_out:
        _emit_json(report)
        return
    table = Table("id", "category", "destination", "via", "note")
    for row in report["categories"]:
        table.add_row(row["source_category_id"], row["name"], row["destination_category"] or "-",
                      row["via"] or "-", row.get("note", ""))
    console.print(table)
    for problem in report["problems"]:
        console.print(f"[red]problem[/red] {problem['name']} ({problem['source_category_id']}): {problem['problem']}")
        console.print(f"    fix: {escape(problem['fix'])}")
    console.print("Destination categories: " + ", ".join(f"{c['id']} {c['name']}" for c in report["destination_categories"]))


@categories_app.command("map")
def categories_map(course: str = CourseOpt, category: str = typer.Option(..., help="Source category id."),
                   to: str = typer.Option(..., "--to", help="Destination category id."),
                   source: str = SourceOpt, destination: str = DestinationOpt) -> None:
    """Map a source category to a destination category (kept by id: renames do not break it)."""
    mapping = _setup_call(map_category(*_ctx(source, destination), course, category, to, actor=os_user()))
    console.print(f"Mapped {mapping.source_category_name} -> {mapping.dest_category_name}. "
                  "A changed mapping takes effect on the next sync of the course.")


@categories_app.command("unmap")
def categories_unmap(course: str = CourseOpt, category: str = typer.Option(..., help="Source category id."),
                     source: str = SourceOpt, destination: str = DestinationOpt) -> None:
    """Remove a category mapping."""
    removed = _setup_call(unmap_category(*_ctx(source, destination), course, category, actor=os_user()))
    console.print("Removed." if removed else "There was no such mapping.")


@app.command("link")
def link_cmd(course: str = CourseOpt, assignment: str = typer.Option(..., help="Source assignment id."),
             to: str = typer.Option(..., "--to", help="Existing destination assignment id."),
             source: str = SourceOpt, destination: str = DestinationOpt) -> None:
    """Send an assignment to an existing destination assignment instead of creating one."""
    linked = _setup_call(link_assignment(*_ctx(source, destination), course, assignment, to, actor=os_user()))
    console.print(f"Linked assignment {assignment} to destination assignment {to} ({linked['name']}); "
                  "the next sync brings it up to date.")


@app.command("unlink")
def unlink_cmd(course: str = CourseOpt, assignment: str = typer.Option(..., help="Source assignment id."),
               source: str = SourceOpt, destination: str = DestinationOpt) -> None:
    """Forget an assignment's link; the next sync creates a new destination assignment."""
    had = _setup_call(unlink_assignment(*_ctx(source, destination), course, assignment, actor=os_user()))
    console.print("Unlinked." if had else "The assignment had no link.")


@app.command("switch")
def switch_cmd(state: str = typer.Argument(..., help="on or off"), course: str = CourseOpt,
               assignment: str = typer.Option(..., help="Source assignment id."),
               source: str = SourceOpt, destination: str = DestinationOpt) -> None:
    """Turn an assignment's sync switch on or off."""
    if state not in ("on", "off"):
        err.print("error: say on or off.")
        raise typer.Exit(COULD_NOT_RUN)
    where = _setup_call(set_switch(*_ctx(source, destination), course, assignment, state == "on", actor=os_user()))
    console.print(f"Sync is {state} for assignment {assignment} (kept in the {where}).")


@app.command("check")
def check_cmd(course: str = CourseOpt, source: str = SourceOpt, destination: str = DestinationOpt,
              json_out: bool = typer.Option(False, "--json")) -> None:
    """Before any sync: every assignment, what blocks it, and the fix; every section, student and
    category that matches nothing in the destination, and the command that matches it."""
    readiness = _setup_call(check_course(*_ctx(source, destination), course))
    if json_out:
        _emit_json(readiness_view(readiness).model_dump(mode="json"))
        return
    table = Table("assignment", "status", "what blocks it", "fix", show_lines=True)
    for row in readiness.assignments:
        blocks = "\n".join(f["message"] for f in row["findings"])
        fixes = "\n".join(f["fix"] for f in row["findings"])
        if row["student_errors"]:
            blocks += ("\n" if blocks else "") + f"{row['student_errors']} student(s) cannot be sent"
        table.add_row(f"{row['assignment_id']} {row['name']}", row["status"], escape(blocks), escape(fixes))
    console.print(table)
    console.print(f"{readiness.ready} of {len(readiness.assignments)} assignments are ready.")
    if readiness.fixes:
        console.print(f"{len(readiness.fixes)} can be fixed with one action: passback fix --course {course}")
    if readiness.unmatched:
        unmatched = Table("unmatched", "what is wrong", "fix", title="Matching", show_lines=True)
        for item in readiness.unmatched:
            unmatched.add_row(escape(f"{item['kind']} {item['source_id']} {item['name']}"), escape(item["problem"]),
                              escape(item["fix"]))
        console.print(unmatched)
        for hint in dict.fromkeys(i["hint"] for i in readiness.unmatched if i.get("hint")):
            console.print(f"  {escape(hint)}")


@app.command("fix")
def fix_cmd(course: str = CourseOpt, source: str = SourceOpt, destination: str = DestinationOpt,
            yes: bool = typer.Option(False, "--yes", help="Apply every safe fix without asking."),
            json_out: bool = typer.Option(False, "--json")) -> None:
    """Apply the safe fixes: shorten names uniquely, points "none" to 0, move to the mapped
    category, or turn the switch off; each one after confirmation."""
    store, settings, route = _ctx(source, destination)
    readiness = _setup_call(check_course(store, settings, route, course))
    chosen = []
    for fix in readiness.fixes:
        if yes or (not json_out and typer.confirm(fix.described, default=False)):
            chosen.append(fix)
    if json_out and not yes and readiness.fixes:
        err.print("error: with --json, confirm with --yes (nothing was changed).")
        raise typer.Exit(COULD_NOT_RUN)
    done = _setup_call(apply_fixes(store, settings, route, course, chosen, actor=os_user())) if chosen else []
    if json_out:
        _emit_json({"applied": done, "offered": len(readiness.fixes)})
        return
    for row in done:
        console.print(f"fixed {row['assignment_id']}: {row['applied']}")
    console.print(f"{len(done)} of {len(readiness.fixes)} fixes applied.")


# --- matching: sections, students and categories --------------------------------------------------

match_app = typer.Typer(no_args_is_help=True,
                        help="How sections, students and categories match between source and destination.")
app.add_typer(match_app, name="match")
match_remove_app = typer.Typer(no_args_is_help=True, help="Remove an override by hand, or a rule.")
match_app.add_typer(match_remove_app, name="remove")
SourceSectionOpt = typer.Option(..., "--source-section", help="Section id in the source.")
SourceStudentOpt = typer.Option(..., "--source-student", help="Student (user) id in the source.")


@match_app.command("rule")
def match_rule(kind: str = typer.Argument(..., help="section, student or category"),
               source_field: str = typer.Option(None, "--source-field",
                                                help="section: sis_id|id|name; student: sis_id|id; "
                                                     "category: ref|id|name (default: sis_id, ref)."),
               dest_field: str = typer.Option(None, "--dest-field",
                                              help="section: id; student: number|id; category: id|name "
                                                   "(default: id, number)."),
               pattern: str = typer.Option(None, "--pattern",
                                           help="Regular expression searched in the source value; its one group "
                                                "(or the whole match) is the destination value, e.g. '^S-(\\d+)-2026$'."),
               strip_prefix: str = typer.Option(None, "--strip-prefix", help="Cut this from the value's start."),
               strip_suffix: str = typer.Option(None, "--strip-suffix", help="Cut this from the value's end."),
               source: str = SourceOpt, destination: str = DestinationOpt,
               json_out: bool = typer.Option(False, "--json")) -> None:
    """Set how every section, student or category of this source and destination matches."""
    store, settings, route = _ctx(source, destination)
    with _friendly_errors():
        rule = matching_service.set_rule(store, settings, route, matching_service.make_rule(
            kind, source_field, dest_field, pattern, strip_prefix, strip_suffix))
    if json_out:
        _emit_json(rule.as_value())
        return
    console.print(f"Matching {escape(rule.described())}. Check a course with `passback check --course ID`; "
                  "the next sync uses it.")


@match_app.command("section")
def match_section(course: str = CourseOpt, source_section: str = SourceSectionOpt,
                  to: str = typer.Option(..., "--to", help="Destination section id (PowerSchool: its DCID)."),
                  source: str = SourceOpt, destination: str = DestinationOpt) -> None:
    """Send one section's grades to this destination section, whatever the rule says."""
    done = _setup_call(matching_service.override_section(*_ctx(source, destination), course, source_section, to))
    console.print(f"Section {source_section} ({escape(done['name'])}) goes to destination section {to} "
                  f"({escape(done['destination_name'])}); the next sync uses it.")


@match_app.command("student")
def match_student(source_student: str = SourceStudentOpt,
                  to: str = typer.Option(..., "--to", help="Destination student id (PowerSchool: its DCID)."),
                  course: str = typer.Option(None, "--course",
                                             help="Check both students in this course first (then a student "
                                                  "number is also taken)."),
                  source: str = SourceOpt, destination: str = DestinationOpt) -> None:
    """Send one student's grades to this destination student, in every course, whatever the rule says."""
    done = _setup_call(matching_service.override_student(*_ctx(source, destination), source_student, to, course))
    console.print(f"Student {source_student} goes to destination student {done['to']}"
                  + ("" if done["checked"] else " (not checked: pass --course to check it)") + ".")


@match_app.command("list")
def match_list(course: str = typer.Option(None, "--course", help="Only this course's section overrides."),
               source: str = SourceOpt, destination: str = DestinationOpt,
               json_out: bool = typer.Option(False, "--json")) -> None:
    """The rule of every kind and every override by hand."""
    store, settings, route = _ctx(source, destination)
    with _friendly_errors():
        report = matching_service.list_matching(store, settings, route, course)
    if json_out:
        _emit_json(report)
        return
    for rule in report["rules"]:
        console.print(("rule     " if rule["set"] else "default  ") + escape(rule["described"]))
    table = Table("kind", "course", "source", "name", "to")
    for row in report["overrides"]:
        table.add_row(row["kind"], row["course_id"] or "(all)", row["source_id"], escape(row["source_name"] or ""),
                      row["to"])
    console.print(table)


@match_remove_app.command("section")
def match_remove_section(course: str = CourseOpt, source_section: str = SourceSectionOpt,
                         source: str = SourceOpt, destination: str = DestinationOpt) -> None:
    """Remove a section's override; the rule matches it again."""
    with _friendly_errors():
        removed = matching_service.remove_section_override(*_ctx(source, destination), course, source_section)
    console.print("Removed." if removed else "There was no such override.")


@match_remove_app.command("student")
def match_remove_student(source_student: str = SourceStudentOpt, source: str = SourceOpt,
                         destination: str = DestinationOpt) -> None:
    """Remove a student's override; the rule matches them again."""
    with _friendly_errors():
        removed = matching_service.remove_student_override(*_ctx(source, destination), source_student)
    console.print("Removed." if removed else "There was no such override.")


@match_remove_app.command("rule")
def match_remove_rule(kind: str = typer.Argument(..., help="section, student or category"),
                      source: str = SourceOpt, destination: str = DestinationOpt) -> None:
    """Back to matching by equal ids for this kind."""
    with _friendly_errors():
        removed = matching_service.clear_rule(*_ctx(source, destination), kind)
    console.print("Removed; ids must be equal again." if removed else "There was no rule for that kind.")


# --- state reporting (Ed-Fi Grades) -----------------------------------------------------------

edfi_app = typer.Typer(no_args_is_help=True, help="State reporting: posted grades to the Ed-Fi ODS/API.")
app.add_typer(edfi_app, name="edfi")
map_app = typer.Typer(no_args_is_help=True, help="Grades resource preferences (mappings).")
edfi_app.add_typer(map_app, name="map")
ExportOpt = typer.Option("sis-export", "--source", help="The csv connection holding posted grades.")
EdFiOpt = typer.Option("state-edfi", "--destination", help="The Ed-Fi connection.")


WaitOpt = typer.Option(0.0, "--wait", min=0.0, metavar="SECONDS",
                       help="When another send to this ODS is running, wait up to this long for it.")


def _edfi_run(resync: bool, source: str, destination: str, dry_run: bool, json_out: bool, wait: float) -> None:
    settings = get_settings()
    store = open_store(settings)
    with _friendly_errors():
        result = _run_with_progress(
            lambda progress: state_service.report(store, settings, source, destination, resync=resync, dry_run=dry_run,
                                                  actor=os_user(), wait_seconds=wait, progress=progress),
            quiet=json_out or dry_run, doing="sending", unit="records")
    if json_out:
        _emit_json(state_run_view(result).shown())
    else:
        console.print(f"{result.status}: " + ", ".join(f"{k} {v}" for k, v in result.counts.items())
                      + f"; {result.events} event(s); {result.stats.get('seconds')} s")
        if result.failure:
            console.print(f"  [red]{escape(result.failure)}[/red]")
        for problem in result.problems:
            console.print(f"[yellow]export[/yellow] {escape(problem)}")
        if result.run_id and (result.counts.get("error") or result.counts.get("skipped")):
            console.print(f"Each one with meaning and fix: passback runs show {result.run_id[:8]}")
    raise typer.Exit(exit_code([result]))


@edfi_app.command("sync")
def edfi_sync(source: str = ExportOpt, destination: str = EdFiOpt,
              dry_run: bool = typer.Option(False, "--dry-run"), json_out: bool = typer.Option(False, "--json"),
              wait: float = WaitOpt) -> None:
    """Queue what changed in the posted grades and send it."""
    _edfi_run(False, source, destination, dry_run, json_out, wait)


@edfi_app.command("resync")
def edfi_resync(source: str = ExportOpt, destination: str = EdFiOpt,
                dry_run: bool = typer.Option(False, "--dry-run"), json_out: bool = typer.Option(False, "--json"),
                wait: float = WaitOpt) -> None:
    """Everything again: drop identity rows the ODS lost, delete ODS grades nobody knows, send the rest."""
    _edfi_run(True, source, destination, dry_run, json_out, wait)


def _prefs(json_out: bool, change: Callable[[Any, Settings], dict[str, Any]]) -> None:
    """Call a preferences service (it validates and saves), then say what it did."""
    settings = get_settings()
    with _friendly_errors():
        grades = change(open_store(settings), settings)
    if json_out:
        _emit_json(grades)
    else:
        console.print("Saved. A changed mapping is sent by the next `passback edfi sync` "
                      "(the district's rule: resync after a mapping change).")


def _change(destination: str, change: dict[str, Any]) -> Callable[[Any, Settings], dict[str, Any]]:
    return lambda store, settings: state_service.change_preferences(store, settings, destination, change)


@edfi_app.command("toggle")
def edfi_toggle(state: str = typer.Argument(..., help="on or off"), destination: str = EdFiOpt,
                json_out: bool = typer.Option(False, "--json")) -> None:
    """The Grades resource toggle: off keeps what was sent and sends nothing new."""
    if state not in ("on", "off"):
        err.print("error: say on or off.")
        raise typer.Exit(COULD_NOT_RUN)
    settings = get_settings()
    with _friendly_errors():
        done = state_service.toggle(open_store(settings), settings, destination, state == "on")
    if json_out:
        _emit_json(done)
    else:
        console.print(done["message"])


@edfi_app.command("status")
def edfi_status(source: str = ExportOpt, destination: str = EdFiOpt,
                json_out: bool = typer.Option(False, "--json")) -> None:
    """The toggle, every mapping, the pending events, and what a changed mapping will rewrite."""
    settings = get_settings()
    with _friendly_errors():
        shown = asyncio.run(state_service.status(open_store(settings), settings, source, destination))
    if json_out:
        _emit_json(shown)
        return
    for line in state_service.status_lines(shown):
        console.print(escape(line))


@map_app.command("task")
def map_task(task: str = typer.Argument(..., help="Grading task name, e.g. 'S1 Final'."),
             grade_type: str = typer.Option(..., help="GradeTypeDescriptor URI, e.g. uri://ed-fi.org/GradeTypeDescriptor#Final"),
             period: list[str] = typer.Option(..., help="GradingPeriodDescriptor URI (repeatable)."),
             final: bool = typer.Option(True, "--final/--not-final", help="The task is marked 'final' in the SIS."),
             state_reported: bool = typer.Option(True, "--state-reported/--not-state-reported",
                                                 help="The task is marked 'state reported' in the SIS."),
             destination: str = EdFiOpt, json_out: bool = typer.Option(False, "--json")) -> None:
    """Map a grading task to a grade type and the grading periods it reports to."""
    _prefs(json_out, lambda store, settings: state_service.map_task(
        store, settings, destination, task, grade_type, list(period), final=final, state_reported=state_reported))


@map_app.command("remove")
def unmap_task(task: str = typer.Argument(..., help="Grading task name, e.g. 'S1 Final'."),
               destination: str = EdFiOpt, json_out: bool = typer.Option(False, "--json")) -> None:
    """Unmap a grading task: its grades stop reporting and the next sync or resync deletes their records."""
    _prefs(json_out, lambda store, settings: state_service.unmap_task(store, settings, destination, task))


@map_app.command("subject")
def map_subject(code: str = typer.Argument(..., help="SCED subject area code, e.g. 02."),
                descriptor: str = typer.Option(..., help="AcademicSubjectDescriptor URI of the state."),
                destination: str = EdFiOpt, json_out: bool = typer.Option(False, "--json")) -> None:
    """Map a SCED subject area to the state's subject descriptor (an unmapped one is not reported)."""
    _prefs(json_out, lambda store, settings: state_service.map_subject(store, settings, destination, code,
                                                                        descriptor))


@map_app.command("grade")
def map_grade(letter: str = typer.Argument(..., help="Posted letter grade, e.g. A."),
              code: int = typer.Option(..., min=0, max=4, help="State grade code 0-4."),
              destination: str = EdFiOpt, json_out: bool = typer.Option(False, "--json")) -> None:
    """Map a posted grade to the state grade code reported as letterGradeEarned."""
    _prefs(json_out, _change(destination, {"state_codes": {letter.upper(): code}}))


@map_app.command("year")
def map_year(year: list[int] = typer.Argument(..., help="School years with valid configuration, e.g. 2027."),
             destination: str = EdFiOpt, json_out: bool = typer.Option(False, "--json")) -> None:
    """The school years grades are sent for."""
    _prefs(json_out, _change(destination, {"school_years": sorted(set(year))}))


# --- courseware: recalculate and sync (seed 002) ---------------------------------------------------

courseware_app = typer.Typer(no_args_is_help=True, help="Courseware course scores: recalculate and sync (seed 002).")
app.add_typer(courseware_app, name="courseware")


def _signed(value: float | None) -> str:
    return "" if value is None else f"{value:+g}"


@courseware_app.command("recalc")
def courseware_recalc(
    course: str = typer.Option(..., "--course", help="Course id in the courseware."),
    student: str = typer.Option(None, "--student", help="Only this student (courseware user id): Sync Score."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show whose score would change, and by how much."),
    source: str = typer.Option(SANDBOX_SOURCE, "--source", help="Courseware connection name."),
    destination: str = typer.Option(SANDBOX_DESTINATION, "--destination", help="Destination connection name."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Recalculate every student's course score from the current point values and send only the changes."""
    from passback.services.courseware import recalculate

    settings = get_settings()
    store = open_store(settings)
    with _friendly_errors():
        report = asyncio.run(recalculate(store, settings, Route(source, destination), course, student_id=student,
                                         dry_run=dry_run, actor=os_user()))
    code = exit_code([RunResult(report["run_id"], report["status"], report["counts"], failure=report["failure"])])
    if json_out:
        _emit_json(report)
        raise typer.Exit(code)
    column = report["column"] or {}
    possible = column.get("points_possible") or {}
    sent, new = (("-" if possible.get(k) is None else f"{possible[k]:g}") for k in ("sent", "new"))
    console.print(f"Course {course} ({report['passback_mode']} passback): course score out of {sent} -> {new} "
                  f"points ({column.get('action', '-')}).")
    table = Table("student", "SIS id", "sent", "now", "change", "outcome",
                  title="Would change" if dry_run else "Changed")
    for row in report["changes"]:
        shown = [("" if row[k] is None else f"{row[k]:g}") for k in ("old", "new")]
        table.add_row(f"{row['student_id']} {row['name'] or ''}", row["sis_id"] or "", *shown, _signed(row["delta"]),
                      row["outcome"] or row["action"])
    console.print(table)
    for row in report["left"]:
        console.print(f"not sent: {row['student_id']} {row['name'] or ''}: {escape(row['reason'] or row['action'])}")
    console.print(f"{len(report['unchanged'])} unchanged.")
    _print_result(RunResult(report["run_id"], report["status"], report["counts"], failure=report["failure"]))
    raise typer.Exit(code)


# --- LTI: platforms and the AGS gradebook connection ------------------------------------------------

lti_app = typer.Typer(no_args_is_help=True, help="LTI 1.3: registered platforms, and passback writing into their gradebooks.")
app.add_typer(lti_app, name="lti")


@lti_app.command("platforms")
def lti_platforms(json_out: bool = typer.Option(False, "--json")) -> None:
    """The LMS platforms registered for the LTI launch (the admin's LTI page lists the same)."""
    from passback.services import lti as lti_service

    with _friendly_errors():
        platforms = lti_service.list_platforms(open_store(get_settings()))
    if json_out:
        _emit_json(platforms)
        return
    for platform in platforms:
        console.print(f"{platform['id']}  {platform['name']}  {platform['issuer']}  client {platform['client_id']}  "
                      f"deployments {', '.join(platform['deployment_ids'])}")


@lti_app.command("ags-connect")
def lti_ags_connect(platform: int = typer.Option(..., "--platform", help="The platform's id (passback lti platforms)."),
                    name: str = typer.Option(..., help="A name for the gradebook connection."),
                    url: str = typer.Option(None, help="The platform's API host (default: its LMS connection's URL)."),
                    replace: bool = typer.Option(False, "--replace", help="Refresh it (after the tool key rotated).")
                    ) -> None:
    """Save an LTI Advantage AGS gradebook connection to a registered platform, signed with passback's tool key."""
    from passback.services import lti_ags

    settings = get_settings()
    with _friendly_errors():
        saved = lti_ags.save_ags_connection(open_store(settings), settings, platform, name=name, url=url, replace=replace)
    console.print(f"Saved connection {saved.name!r} (lti_ags, {saved.base_url}); passback signs its token requests "
                  "with its LTI tool key. Match each course's sections to its line items container with "
                  "`passback match section`.")


# --- the store -----------------------------------------------------------------------------------

db_app = typer.Typer(no_args_is_help=True, help="The store: its schema.")
app.add_typer(db_app, name="db")


@app.command("serve")
def serve(host: str = typer.Option("127.0.0.1", help="The address to listen on."),
          port: int = typer.Option(8000, help="The port to listen on."),
          scheduler: bool = typer.Option(True, "--scheduler/--no-scheduler",
                                         help="Run the nightly schedules in this process."),
          workers: bool = typer.Option(False, "--workers",
                                       help="Scaled mode: Live Events syncs go to the workers (passback worker); "
                                            "the schedules are the beat's.")) -> None:
    """The web product: Grade Sync pages, the REST API (/api/v1, /openapi.json) and the LTI launch."""
    import uvicorn

    from passback.web.app import create_app

    settings = get_settings()
    with _friendly_errors():
        if workers:
            from passback.worker.tasks import enqueue

            store = open_store(settings)
            application = create_app(settings, store, scheduler=False, coalescer=True,
                                     dispatch=queued_dispatch(store, settings, enqueue))
        else:
            open_store(settings).dispose()  # upgrade the schema, or say why the store cannot open, before listening
            application = create_app(settings, scheduler=scheduler)
    console.print(f"passback serves on http://{host}:{port}/ (sign in at /login; the API is described at /api/docs)")
    uvicorn.run(application, host=host, port=port, log_level="warning", proxy_headers=True)


@app.command("worker")
def worker_cmd(
    concurrency: int = typer.Option(1, "--concurrency", min=1, help="Courses this worker runs at once (processes)."),
    beat: bool = typer.Option(False, "--beat", help="Also run the beat (due schedules) in this worker: one per district."),
    loglevel: str = typer.Option("WARNING", "--loglevel"),
) -> None:
    """Run a task-engine worker (Celery) over the store: courses queued by sync --queue and by the schedules."""
    from passback.worker.app import app as engine  # imported here: the broker's client only when a worker runs

    args = ["worker", f"--concurrency={concurrency}", f"--loglevel={loglevel}", "--without-gossip", "--without-mingle"]
    args += ["--pool=solo"] if concurrency == 1 else ["--pool=prefork"]
    if beat:
        args.append("--beat")
    engine.worker_main(args)


@app.command("beat")
def beat_cmd(loglevel: str = typer.Option("WARNING", "--loglevel")) -> None:
    """Run the task engine's beat alone: every PASSBACK_SCHEDULER_SECONDS it queues the due schedules."""
    from passback.worker.app import app as engine

    engine.start(["beat", f"--loglevel={loglevel}"])


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the store's schema to this version (the CLI also does it on first use)."""
    settings = get_settings()
    url = settings.resolved_database_url()
    if url.startswith("sqlite"):
        settings.ensure_data_dir()
    with _friendly_errors():
        open_store(settings, url).dispose()
    console.print("The store is at this version's schema.")


def run() -> None:
    """The console entry point: a store that cannot be opened is one clear line, not a traceback."""
    from passback.store.db import StoreUnavailable

    try:
        code = app(standalone_mode=False)
    except StoreUnavailable as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise SystemExit(COULD_NOT_RUN) from exc
    except typer.Abort as exc:
        raise SystemExit(COULD_NOT_RUN) from exc
    except Exception as exc:
        if not _is_usage_error(exc):
            raise
        exc.show()  # type: ignore[attr-defined]
        raise SystemExit(COULD_NOT_RUN) from exc  # a scheduler reads 2 as "some items errored"
    raise SystemExit(code if isinstance(code, int) else 0)


def _is_usage_error(exc: Exception) -> bool:
    """A bad command line, as the command-line library reports it (its classes move between versions)."""
    return any(kind.__name__ == "UsageError" for kind in type(exc).__mro__) and hasattr(exc, "show")


if __name__ == "__main__":  # pragma: no cover
    run()
