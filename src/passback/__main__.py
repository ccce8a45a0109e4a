"""``python -m passback``: the same command as ``passback``."""

from passback.cli import run

run()
