"""Assembling an emulator app: its routes plus what every emulator shares.

The control endpoints (request counts, fault settings, requests in flight, a dump of the state), the state
file kept across restarts, and the fault-injection middleware are the same for every
system; only the routes and the throttled answer differ.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from passback.emulators.faults import FaultConfig, FaultMiddleware
from passback.emulators.state import StateFile
from passback.emulators.write_log import AcceptedWrite, WriteLog


def emulator_app(
    routes: list[BaseRoute],
    *,
    emulator: Any,
    faults: FaultConfig,
    state_file: StateFile,
    stats_extra: Callable[[], dict[str, Any]] = dict,
    on_faults: Callable[[dict[str, Any]], None] | None = None,
    control: list[BaseRoute] | None = None,
    throttled_response: tuple[int, bytes, dict[str, str]] | None = None,
    fast_path: Callable[..., Any] | None = None,
    on_shutdown: list[Callable[[], Awaitable[None]]] | None = None,
) -> Starlette:
    """``emulator`` must have ``state`` (a JSON-able dict) and ``requests`` (a Counter); ``on_shutdown`` stops
    what the emulator runs in the background (Canvas's Live Events deliveries) before the state is saved."""

    async def stats(request: Request) -> Response:
        return JSONResponse({"requests": dict(emulator.requests), "total": sum(emulator.requests.values()),
                             **stats_extra()})

    async def fault_control(request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            try:
                if on_faults is not None:
                    on_faults(body)
                faults.update(body)
            except ValueError as exc:
                return JSONResponse({"message": str(exc)}, status_code=400)
        return JSONResponse(faults.as_dict() | stats_extra())

    async def in_flight(request: Request) -> Response:
        """The requests being answered now and the most at once; POST starts the maximum again."""
        if request.method == "POST":
            faults.in_flight.reset()
        return JSONResponse(faults.in_flight.as_dict())

    async def dump_state(request: Request) -> Response:
        return JSONResponse(emulator.state)

    writes: list[AcceptedWrite] = []

    async def write_log(request: Request) -> Response:
        return JSONResponse([{"method": w.method, "path": w.path, "query": w.query, "status": w.status,
                              "body": w.body.decode("utf-8", "replace")} for w in writes])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        state_file.start(lambda: emulator.state)
        yield
        for stop in on_shutdown or []:
            await stop()
        await state_file.stop(emulator.state)

    app = Starlette(
        routes=[*routes,
                Route("/_emulator/stats", stats, methods=["GET"]),
                Route("/_emulator/faults", fault_control, methods=["GET", "POST"]),
                Route("/_emulator/in_flight", in_flight, methods=["GET", "POST"]),
                Route("/_emulator/state", dump_state, methods=["GET"]),
                Route("/_emulator/writes", write_log, methods=["GET"]),
                *(control or [])],
        lifespan=lifespan,
    )
    app.state.emulator = emulator
    app.state.writes = writes
    app.state.faults = faults
    app.state.in_flight = faults.in_flight  # the gauge of requests in flight (emulators/faults.py)
    if fast_path is not None:  # inside the fault middleware: faults and latency apply to it too
        app.add_middleware(fast_path)
    app.add_middleware(WriteLog, writes=writes)  # inside the faults: a write faulted before the handler is not logged
    app.add_middleware(FaultMiddleware, config=faults, throttled_response=throttled_response)
    return app
