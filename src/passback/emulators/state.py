"""Emulator state on disk, so an emulated LMS or SIS keeps its data between runs.

State is a plain JSON document; it is written atomically when it changed, at most once
per ``flush_seconds`` and at shutdown, never once per request (a full sync makes
thousands of writes). With ``flush_seconds`` 0 it is written at shutdown only: a large
state takes a while to write, and a benchmark should not time the emulator's saving.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any


class StateFile:
    def __init__(self, path: Path | None, flush_seconds: float = 1.0) -> None:
        self.path = path
        self.flush_seconds = flush_seconds
        self.dirty = False
        self._task: asyncio.Task[None] | None = None

    def load(self) -> dict[str, Any] | None:
        if self.path is None or not self.path.exists():
            return None
        return json.loads(self.path.read_text())

    def save(self, state: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, separators=(",", ":")))
        os.replace(tmp, self.path)
        self.dirty = False

    def start(self, get_state: Any) -> None:
        if self.flush_seconds <= 0:
            return  # saved at shutdown only

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.flush_seconds)
                if self.dirty:
                    self.save(get_state())

        self._task = asyncio.get_running_loop().create_task(loop())

    async def stop(self, state: dict[str, Any]) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.dirty:
            self.save(state)
