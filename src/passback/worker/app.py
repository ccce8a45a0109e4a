"""The Celery app: the broker, the delivery rules that make a killed worker's task come back, and the beat.

Delivery rules, each for a promise:

* ``task_acks_late`` with ``task_reject_on_worker_lost``: a task is acknowledged after it
  ran, so a worker killed mid-run leaves it with the broker, which hands it to another
  worker (RabbitMQ at once, when the connection drops; Redis after the visibility timeout,
  ``PASSBACK_TASK_VISIBILITY_SECONDS``);
* ``worker_prefetch_multiplier = 1``: a worker takes one course at a time, so the courses of
  a district spread over every worker instead of queuing behind the first;
* tasks carry a run id, never grades or credentials (the store has the rest), and results
  are not kept (the run history is the result).

The beat has two entries: look for due schedules every ``PASSBACK_SCHEDULER_SECONDS`` (what
is due, and when it last ran, is in the store, so a restarted beat carries on), and hand
the workers again the runs queued too long or left by a dead worker every
``PASSBACK_REQUEUE_SECONDS`` (a Redis broker restarted forgets its queue; the store does not).
"""

from __future__ import annotations

from celery import Celery

from passback.settings import Settings, get_settings

TICK = "passback.tick_schedules"
REQUEUE = "passback.requeue_stale"
EXECUTE = "passback.execute_run"


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("passback", broker=settings.broker_url, include=["passback.worker.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.task_visibility_seconds},
        worker_hijack_root_logger=False,
        beat_schedule={"due-schedules": {"task": TICK, "schedule": settings.scheduler_seconds},
                       "stale-runs": {"task": REQUEUE, "schedule": settings.requeue_seconds}},
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
        timezone="UTC",
    )
    return app


app = make_app()
