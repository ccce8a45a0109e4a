"""The layers are kept by a check, not by hope: import-linter's contracts in pyproject.toml,
and the line length the project keeps (ruff E501)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_lines_keep_the_projects_length() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "E501", "src", "tests", "bench"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
