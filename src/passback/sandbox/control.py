"""Starting, stopping and resetting the sandbox's emulators as background processes.

The sandbox lives in ``<data dir>/sandbox``: each emulator's state file, and
``sandbox.json`` with the district's shape, credentials, ports and process ids. The
state files outlive the processes, so a second ``passback demo`` finds the grades the
first one wrote, as a real LMS and SIS would keep them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from passback.errors import Unavailable
from passback.sandbox.district import Credentials, DistrictShape, generate

SYSTEMS = ("canvas", "powerschool")  # what `sandbox up` serves unless told otherwise
ALL_SYSTEMS = ("canvas", "powerschool", "schoology", "edfi", "oneroster")
DEFAULT_PORTS = {"canvas": 8731, "powerschool": 8732, "schoology": 8733, "edfi": 8734, "oneroster": 8735}
SCHOOLOGY_KEY, SCHOOLOGY_SECRET = "sandbox-schoology", "sandbox-schoology-secret"
EDFI_KEY, EDFI_SECRET = "sandbox-edfi", "sandbox-edfi-secret"
SAMPLE_EXPORT = "posted-grades.csv"


def parse_systems(text: str) -> tuple[str, ...]:
    """``canvas,powerschool,...`` as a tuple, or an error naming the systems there are."""
    chosen = tuple(dict.fromkeys(s.strip().lower() for s in text.split(",") if s.strip()))
    unknown = [s for s in chosen if s not in ALL_SYSTEMS]
    if unknown or not chosen:
        raise SandboxError(f"Unknown sandbox system(s) {', '.join(unknown) or '(none)'}; choose from "
                           f"{', '.join(ALL_SYSTEMS)}.")
    return chosen


class SandboxError(Unavailable):
    """The sandbox could not do what was asked; the message says why and where its logs are."""


@dataclass
class SandboxInfo:
    shape: dict[str, Any]
    credentials: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    systems: list[str] = field(default_factory=lambda: list(SYSTEMS))

    def url(self, system: str) -> str:
        return f"http://127.0.0.1:{self.ports[system]}"

    @property
    def creds(self) -> Credentials:
        return Credentials(**self.credentials)


class Sandbox:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "sandbox"
        self.info_path = self.root / "sandbox.json"

    def state_path(self, system: str) -> Path:
        return self.root / f"{system}.json"

    def load(self) -> SandboxInfo | None:
        if not self.info_path.exists():
            return None
        return SandboxInfo(**json.loads(self.info_path.read_text()))

    def save(self, info: SandboxInfo) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.info_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(info), indent=2))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.info_path)

    @property
    def sample_export(self) -> Path:
        """A posted-grades export matching the sandbox ODS, for trying the state-reporting commands."""
        return self.root / SAMPLE_EXPORT

    def create(self, shape: DistrictShape) -> SandboxInfo:
        canvas, powerschool, credentials = generate(shape)
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_path("canvas").write_text(json.dumps(canvas))
        self.state_path("powerschool").write_text(json.dumps(powerschool))
        for stale in ("schoology", "edfi", "oneroster"):
            self.state_path(stale).unlink(missing_ok=True)
        self.sample_export.unlink(missing_ok=True)
        info = SandboxInfo(shape=asdict(shape), credentials=asdict(credentials))
        self.save(info)
        return info

    def _ensure_state(self, system: str, info: SandboxInfo) -> None:
        """Generate a system's data the first time it is served (Schoology mirrors the Canvas district)."""
        if self.state_path(system).exists():
            return
        if system == "schoology":
            from passback.sandbox.district import schoology_from_canvas

            canvas = json.loads(self.state_path("canvas").read_text())
            self.state_path(system).write_text(json.dumps(schoology_from_canvas(canvas, SCHOOLOGY_KEY,
                                                                                SCHOOLOGY_SECRET)))
        elif system == "oneroster":  # the SIS that fed Canvas, serving OneRoster 1.1 and 1.2
            from passback.sandbox.oneroster_district import oneroster_from_canvas

            canvas = json.loads(self.state_path("canvas").read_text())
            self.state_path(system).write_text(json.dumps(oneroster_from_canvas(canvas)))
        elif system == "edfi":
            from passback.connectors.csv_export.source import write_export
            from passback.sandbox.edfi_district import EdFiShape
            from passback.sandbox.edfi_district import generate as generate_ods

            ods, grades = generate_ods(EdFiShape(grades=200, seed=int(info.shape.get("seed", 7))), EDFI_KEY,
                                       EDFI_SECRET)
            self.state_path(system).write_text(json.dumps(ods))
            write_export(self.sample_export, grades)

    def running(self, info: SandboxInfo, systems: tuple[str, ...] | None = None) -> bool:
        wanted = systems or tuple(info.systems)
        return all(s in info.pids and _alive(info.pids[s]) and _answers(info.url(s)) for s in wanted)

    def up(self, shape: DistrictShape | None = None, latency_ms: float = 0.0, fault_rate: float = 0.0,
           fault_kinds: str = "429,500", systems: tuple[str, ...] = SYSTEMS) -> tuple[SandboxInfo, bool]:
        """Start the emulators unless they run; returns the info and whether it started them."""
        info = self.load()
        if info is not None and set(systems) <= set(info.systems) and self.running(info, systems):
            return info, False
        if info is not None and info.pids:
            self.down()
            info = self.load()
        if info is None or not self.state_path("canvas").exists():
            info = self.create(shape or DistrictShape())
        info.options = {"latency_ms": latency_ms, "fault_rate": fault_rate, "fault_kinds": fault_kinds}
        info.systems = list(systems)
        info.ports, info.pids = {}, {}
        for system in systems:
            self._ensure_state(system, info)
            port = _free_port(DEFAULT_PORTS[system])
            log = open(self.root / f"{system}.log", "ab")
            process = subprocess.Popen(
                [sys.executable, "-m", "passback.sandbox.serve", system, "--port", str(port),
                 "--state", str(self.state_path(system)), "--latency-ms", str(latency_ms),
                 "--fault-rate", str(fault_rate), "--fault-kinds", fault_kinds],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
            )
            info.ports[system] = port
            info.pids[system] = process.pid
        self.save(info)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(_answers(info.url(s)) for s in systems):
                return info, True
            if not all(_alive(pid) for pid in info.pids.values()):
                break
            time.sleep(0.1)
        self.down()
        raise SandboxError(f"The sandbox emulators did not start; see the logs in {self.root}.")

    def down(self) -> bool:
        info = self.load()
        if info is None or not info.pids:
            return False
        for pid in info.pids.values():
            if _alive(pid):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(pid) for pid in info.pids.values()):
            time.sleep(0.05)
        for pid in info.pids.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        info.pids = {}
        self.save(info)
        return True

    def reset(self, shape: DistrictShape | None = None) -> SandboxInfo:
        self.down()
        previous = self.load()
        chosen = shape or (DistrictShape(**previous.shape) if previous else DistrictShape())
        return self.create(chosen)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_emulator/stats", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def _free_port(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            pass
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
