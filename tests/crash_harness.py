"""What the SIGKILL crash tests share: starting a child that is dead by the end whatever
happens, reading its lines with a bound, and saying what went wrong with the end of its log.

Each child writes its stderr to ``child-<generation>.log`` beside the database, so a failure can
show what the killed process was doing.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
EXIT_TIMEOUT_S = 30.0


def log_of(db: Path, generation: int) -> Path:
    """Where child ``generation`` writes its stderr."""
    return db.with_name(f"child-{generation}.log")


@contextmanager
def child_process(
    module: str, db: Path, generation: int, *args: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m module db args...`` from the repository root; it is killed (if still
    running) and reaped when the block ends."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with open(log_of(db, generation), "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, str(db), *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=EXIT_TIMEOUT_S)
        assert proc.stdout is not None
        proc.stdout.close()


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The child's first line of output, or '' if it ends or stays silent for ``timeout``."""
    stdout: IO[bytes] | None = proc.stdout
    assert stdout is not None
    fd = stdout.fileno()
    deadline = time.monotonic() + timeout
    buffer = b""
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return ""
        chunk = os.read(fd, 4096)
        if not chunk:
            return ""
        buffer += chunk
    return buffer.split(b"\n", 1)[0].decode(errors="replace")


def child_failure(db: Path, generation: int, proc: subprocess.Popen[bytes], said: str) -> str:
    """What to show when a child misbehaved: its exit status, output and the end of its log."""
    log = log_of(db, generation).read_text(errors="replace")
    return (
        f"child {generation} (exit status {proc.poll()}) said {said!r}; "
        f"the end of its log:\n{log[-4000:]}"
    )
