"""What every benchmark shares: percentiles, memory, the event loop, the machine's description."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import math
import os
import platform
import sqlite3
import sys
import tempfile
from typing import Any


def rss_bytes() -> int:
    """Resident set size of this process."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return int(psutil.Process().memory_info().rss)


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``samples``."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def filesystem(path: str) -> str:
    """The kind of file system ``path`` is on (``ext4``, ``tmpfs``...), for the report: a
    commit's sync costs what the disk under it does ("unknown" without psutil)."""
    try:
        import psutil
    except ImportError:
        return "unknown"
    best = max(
        (p for p in psutil.disk_partitions(all=True) if path.startswith(p.mountpoint)),
        key=lambda p: len(p.mountpoint),
        default=None,
    )
    return str(best.fstype) if best is not None else "unknown"


def machine(loops: set[str], uvloop_version: str | None, load_before: float) -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "uvloop": loops == {"uvloop"},
        "uvloop_version": uvloop_version,
        "event_loops": sorted(loops),
        "tmp_dir": tempfile.gettempdir(),
        "tmp_filesystem": filesystem(tempfile.gettempdir()),
        # Other processes' load skews every figure here; a busy machine shows in these.
        "load_average_1m_before": load_before,
        "load_average_1m_after": os.getloadavg()[0],
    }


def install_uvloop() -> str | None:
    """Use uvloop for every loop created from now on, when it is installed; its version."""
    try:
        import uvloop
    except ImportError:
        return None
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return importlib.metadata.version("uvloop")


def publish(figures: dict[str, Any], table: str, json_path: str | None) -> int:
    """Print ``table``, write ``figures`` as JSON to ``json_path`` (if any), name every failed
    audit check on stderr; the exit status: 0 when the audit after the run was ok."""
    print(table)
    if json_path:
        with open(json_path, "w") as file:
            json.dump(figures, file, indent=2)
            file.write("\n")
    for check in figures["audit"]:
        if not check["ok"]:
            print(f"audit: {check['name']}: {check['detail']}", file=sys.stderr)
    return 0 if figures["audit_ok"] else 1
