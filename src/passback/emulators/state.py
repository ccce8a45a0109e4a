"""Emulator state on disk, so an emulated LMS or SIS keeps its data between runs.

State is a plain JSON document; it is written atomically when it changed, at most once
per ``flush_seconds`` and at shutdown, never once per request (a full sync makes
thousands of writes). With ``flush_seconds`` 0 it is written at shutdown only: a large
state takes a while to write, and a benchmark should not time the emulator's saving.

A save blocks the emulator's loop (the state is changed by every write, so it cannot be
written beside them), so a large state is saved less often: the pause between saves is at
least ``SAVE_SHARE_INVERSE`` times the last save's duration, keeping saving under a tenth of
the emulator's time (a district of 240,000 scores is tens of MB of JSON).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import orjson

from passback.jsontext import loads

SAVE_SHARE_INVERSE = 10


class StateFile:
    def __init__(self, path: Path | None, flush_seconds: float = 1.0) -> None:
        self.path = path
        self.flush_seconds = flush_seconds
        self.dirty = False
        self.last_save_seconds = 0.0
        self._task: asyncio.Task[None] | None = None

    def load(self) -> dict[str, Any] | None:
        if self.path is None or not self.path.exists():
            return None
        return loads(self.path.read_bytes())  # type: ignore[no-any-return]

    def save(self, state: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        tmp = self.path.with_suffix(".tmp")
        try:
            text = orjson.dumps(state, option=orjson.OPT_NON_STR_KEYS)
        except (orjson.JSONEncodeError, TypeError):  # what only the standard library writes (an integer of 400 digits)
            text = json.dumps(state, separators=(",", ":")).encode()
        tmp.write_bytes(text)
        os.replace(tmp, self.path)
        self.dirty = False
        self.last_save_seconds = time.perf_counter() - started

    def start(self, get_state: Any) -> None:
        if self.flush_seconds <= 0:
            return  # saved at shutdown only

        async def loop() -> None:
            while True:
                await asyncio.sleep(max(self.flush_seconds, SAVE_SHARE_INVERSE * self.last_save_seconds))
                if self.dirty:
                    self.save(get_state())

        self._task = asyncio.get_running_loop().create_task(loop())

    async def stop(self, state: dict[str, Any]) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.dirty:
            self.save(state)
