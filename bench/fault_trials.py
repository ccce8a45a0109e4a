"""More seeded fault trials of the task engine than CI runs: faults on 12% of requests, a worker
SIGKILLed mid-run, the broker restarted, two workers racing for a course (tests/engine/trials.py).

Each trial ends with PowerTeacher Pro holding exactly what Canvas says and each assignment
created once; a failing trial stops the bench and names its seed, which replays it:

    python bench/fault_trials.py [--trials 200] [--first-seed 0]
    python bench/fault_trials.py --seed 37
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' trial kit

from passback.settings import Settings  # noqa: E402
from passback.store.db import Store, make_engine, migrate  # noqa: E402
from passback.worker.app import EXECUTE, make_app  # noqa: E402
from tests.engine.conftest import Broker, Workers, engine_env  # noqa: E402
from tests.engine.trials import run_trial  # noqa: E402

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--seed", type=int, help="replay this one trial")
    args = parser.parse_args()
    seeds = [args.seed] if args.seed is not None else list(range(args.first_seed, args.first_seed + args.trials))

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as db:
        db.execute(sa.text(f'create schema "{schema}"'))
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    migrate(engine)
    store = Store(engine)
    broker = Broker()
    broker.start()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), concurrency=4)
        logs = Path(tmp) / "logs"
        logs.mkdir()
        workers = Workers(engine_env(settings, url, broker.url, PASSBACK_HTTP_TIMEOUT="1"), logs)
        workers.start(1, beat=True)
        workers.start(1)
        sender = make_app(Settings(broker_url=broker.url))
        started = time.monotonic()
        seconds: list[float] = []
        by_scenario: Counter[str] = Counter()
        faults: Counter[str] = Counter()
        try:
            for seed in seeds:
                result = run_trial(seed, store, settings, broker, workers,
                                   lambda run_id: sender.send_task(EXECUTE, args=[run_id]))
                seconds.append(result.seconds)
                by_scenario[result.scenario] += 1
                faults.update(result.injected)
                print(f"seed {seed:5d} {result.scenario:7s} {result.runs} runs {result.seconds:6.2f} s  "
                      f"faults {dict(result.injected)}", flush=True)
        finally:
            workers.stop()
            broker.stop()
            engine.dispose()
            with admin.begin() as db:
                db.execute(sa.text(f'drop schema "{schema}" cascade'))
            admin.dispose()
    print(f"\n{len(seconds)} trials passed in {time.monotonic() - started:.1f} s "
          f"(median {statistics.median(seconds):.2f} s a trial): {dict(by_scenario)}")
    print(f"faults injected: {dict(faults)}")


if __name__ == "__main__":
    main()
