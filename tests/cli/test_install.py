"""The command as installed: the ``shopkeep`` console script, ``python -m shopkeep``, and
``main.py`` in a checkout run the same command line; the server imports no test-only package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import shopkeep

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = {
    "console script": [str(Path(sys.executable).with_name("shopkeep"))],
    "python -m shopkeep": [sys.executable, "-m", "shopkeep"],
    "main.py": [sys.executable, str(ROOT / "main.py")],
}
TEST_ONLY = ("hypothesis", "schemathesis", "pykka", "psutil", "pytest", "playwright")


def run(entry: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if entry == "console script" and not Path(ENTRY_POINTS[entry][0]).exists():
        # a virtualenv installed before the script existed; make install (make test) installs
        # the project again whenever pyproject.toml changes
        pytest.skip("no shopkeep script beside this Python: run make install")
    return subprocess.run(
        [*ENTRY_POINTS[entry], *args], cwd=cwd, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_each_entry_point_prints_the_version(entry: str, tmp_path: Path) -> None:
    result = run(entry, "--version", cwd=ROOT if entry != "console script" else tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"shopkeep {shopkeep.__version__}"


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_each_entry_point_runs_the_same_commands(entry: str, tmp_path: Path) -> None:
    cwd = ROOT if entry != "console script" else tmp_path
    helped = run(entry, "serve", "--help", cwd=cwd)
    missing = run(entry, "audit", "--db", str(tmp_path / "none.db"), cwd=cwd)

    assert helped.returncode == 0 and "SHOPKEEP_ORDER_TIMEOUT" in helped.stdout
    assert missing.returncode == 2
    assert missing.stderr.startswith(
        "shopkeep audit: error: argument --db (env SHOPKEEP_DB): cannot audit"
    )
    assert missing.stderr.count("\n") == 1


def test_the_command_line_and_the_server_import_no_test_only_package() -> None:
    probe = (
        "import sys; from shopkeep.cli import build_parser; build_parser(); "
        "import shopkeep.http.server, shopkeep.bench.load.command, shopkeep.backup; "
        "import shopkeep.admin.pages, shopkeep.admin.actions, shopkeep.admin.screenshots; "
        f"print(sorted(set({TEST_ONLY!r}) & set(sys.modules)))"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_proof_that_needs_a_missing_test_package_says_which_extra_in_one_line(
    tmp_path: Path,
) -> None:
    # a stand-in for schemathesis that cannot be imported, first on the path
    (tmp_path / "hypothesis.py").write_text("raise ModuleNotFoundError(name='hypothesis')\n")
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}

    result = subprocess.run(
        [sys.executable, "-m", "shopkeep.proof", "api-abuse", "--help"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert "needs hypothesis" in line and "shopkeep[proof]" in line
