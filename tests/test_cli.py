"""The command line as an operator meets it: run as a real process, like ``python main.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVE_FLAGS = ("--db", "--host", "--port", "--synchronous")


def run_main(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_serve_help_explains_every_flag() -> None:
    result = run_main("serve", "--help")

    assert result.returncode == 0, result.stderr
    for flag in SERVE_FLAGS:
        assert flag in result.stdout


def test_serve_on_a_missing_directory_fails_in_one_line() -> None:
    result = run_main("serve", "--db", "/nonexistent-dir/x.db")

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("shopkeep: error:")
    assert "/nonexistent-dir/x.db" in lines[0]


def test_serve_on_a_directory_fails_in_one_line(tmp_path: Path) -> None:
    result = run_main("serve", "--db", str(tmp_path))

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("shopkeep: error: cannot use database path")


@pytest.mark.parametrize("args", [("serve", "--port", "notanumber"), ("serve", "--nope")])
def test_a_bad_flag_is_a_usage_error(args: tuple[str, ...]) -> None:
    result = run_main(*args)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error:" in result.stderr
