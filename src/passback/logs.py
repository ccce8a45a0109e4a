"""Structured logs: JSON lines on standard error, ids and counts only.

Student names, scores and credentials never go into a log event; run items in the
store carry those details for the people allowed to see them.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure_logging(level: str | None = None) -> None:
    chosen = (level or os.environ.get("PASSBACK_LOG_LEVEL", "WARNING")).upper()
    logging.basicConfig(stream=sys.stderr, level=chosen, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(chosen)),
        logger_factory=lambda *_: structlog.PrintLogger(file=sys.stderr),  # the stderr of each call's moment
        cache_logger_on_first_use=False,
    )
