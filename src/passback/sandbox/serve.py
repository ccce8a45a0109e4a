"""Serve one emulator under uvicorn: ``python -m passback.sandbox.serve canvas --port N``.

Used by ``passback sandbox up`` (as a background process), by the tests and by the
benchmarks, so every caller gets the same emulator behind real HTTP on loopback.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from passback.emulators.faults import FAULT_KINDS, FaultConfig


def build_app(system: str, state_path: Path | None, faults: FaultConfig,  # type: ignore[no-untyped-def]
              flush_seconds: float = 1.0):
    if system == "canvas":
        from passback.emulators.canvas import create_app
    elif system == "powerschool":
        from passback.emulators.powerschool import create_app
    elif system == "schoology":
        from passback.emulators.schoology import create_app
    elif system == "edfi":
        from passback.emulators.edfi import create_app
    elif system == "oneroster":
        from passback.emulators.oneroster import create_app
    else:
        raise SystemExit(f"Unknown system {system!r}: choose canvas, schoology, powerschool, edfi or oneroster.")
    if system in ("edfi", "oneroster"):
        return create_app(faults=faults, state_path=state_path, flush_seconds=flush_seconds)
    return create_app(faults=faults, state_path=state_path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("system", choices=["canvas", "schoology", "powerschool", "edfi", "oneroster"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, help="JSON file the emulator loads and keeps")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--fault-kinds", default="429,500", help=f"comma list of {', '.join(FAULT_KINDS)}")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--flush-seconds", type=float, default=1.0,
                        help="how often a changed state is saved (0: at shutdown only; Ed-Fi)")
    args = parser.parse_args(argv)
    faults = FaultConfig(
        latency_ms=args.latency_ms,
        fault_rate=args.fault_rate,
        fault_kinds=tuple(k for k in args.fault_kinds.split(",") if k),
        seed=args.seed,
    )
    app = build_app(args.system, args.state, faults, args.flush_seconds)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
