"""A redis-server of a test's or a bench's own, on a free port, keeping nothing on disk (as the machine's Redis).

The task engine's tests restart it (a broker that restarts forgets its queue) without
touching the machine's own Redis, and a bench measures on it alone.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field

import redis


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class BrokerUnavailable(RuntimeError):
    """redis-server is missing or did not start: the caller fails (a test never skips for it)."""


@dataclass
class Broker:
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None  # type: ignore[type-arg]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise BrokerUnavailable("redis-server is not installed (Debian's redis-server package); the task "
                                    "engine's tests and benches run a broker of their own.")
        self.process = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if redis.Redis(port=self.port, socket_connect_timeout=0.5).ping():
                    return
            time.sleep(0.05)
        raise BrokerUnavailable(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self) -> None:
        """The broker goes down and comes back empty: every queued message is gone."""
        self.stop()
        self.start()
