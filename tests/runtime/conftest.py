"""Fixtures: a runtime on a real SQLite file in tmp_path, on a virtual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from shopkeep.bootstrap import Runtime, open_runtime
from shopkeep.runtime import RuntimeConfig, VirtualClock
from tests.runtime.probe import PROBE_MIGRATIONS, Probe, open_all_gates

OpenRuntime = Callable[..., Awaitable[Runtime]]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def open_probe_runtime(
    tmp_path: Path, clock: VirtualClock
) -> AsyncIterator[OpenRuntime]:
    """Open runtimes with the Probe kind; each is stopped at the end of the test."""
    Probe.reset()
    async with AsyncExitStack() as stack:

        async def open_(config: RuntimeConfig | None = None, **options: Any) -> Runtime:
            options.setdefault("clock", clock)
            runtime = await stack.enter_async_context(
                open_runtime(
                    str(tmp_path / "probe.db"),
                    kinds=[Probe],
                    migrations=PROBE_MIGRATIONS,
                    config=config,
                    **options,
                )
            )
            # exit callbacks run last-in first-out: waiting probes are let go, then it stops
            stack.callback(open_all_gates)
            return runtime

        yield open_


@pytest.fixture
async def runtime(open_probe_runtime: OpenRuntime) -> Runtime:
    return await open_probe_runtime()
