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

from passback.sandbox.district import Credentials, DistrictShape, generate

SYSTEMS = ("canvas", "powerschool")
DEFAULT_PORTS = {"canvas": 8731, "powerschool": 8732}


class SandboxError(RuntimeError):
    pass


@dataclass
class SandboxInfo:
    shape: dict[str, Any]
    credentials: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

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

    def create(self, shape: DistrictShape) -> SandboxInfo:
        canvas, powerschool, credentials = generate(shape)
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_path("canvas").write_text(json.dumps(canvas))
        self.state_path("powerschool").write_text(json.dumps(powerschool))
        info = SandboxInfo(shape=asdict(shape), credentials=asdict(credentials))
        self.save(info)
        return info

    def running(self, info: SandboxInfo) -> bool:
        return bool(info.pids) and all(_alive(pid) for pid in info.pids.values()) and all(
            _answers(info.url(system)) for system in SYSTEMS
        )

    def up(self, shape: DistrictShape | None = None, latency_ms: float = 0.0, fault_rate: float = 0.0,
           fault_kinds: str = "429,500") -> tuple[SandboxInfo, bool]:
        """Start the emulators unless they run; returns the info and whether it started them."""
        info = self.load()
        if info is not None and self.running(info):
            return info, False
        if info is None or not self.state_path("canvas").exists():
            info = self.create(shape or DistrictShape())
        info.options = {"latency_ms": latency_ms, "fault_rate": fault_rate, "fault_kinds": fault_kinds}
        for system in SYSTEMS:
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
            if all(_answers(info.url(s)) for s in SYSTEMS):
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
