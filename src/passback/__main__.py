"""``python -m passback``: the same command as ``passback``."""

from passback.cli import app

app(prog_name="passback")
