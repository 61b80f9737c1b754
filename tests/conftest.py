"""Fixtures shared by every test folder."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from shopkeep.logs import SILENCED


@pytest.fixture
def saved_garbage() -> Iterator[list[Any]]:
    """What the cycle collector finds unreachable while the test runs, kept to look at rather
    than freed: a reference cycle the code under test made."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Whatever logging the process had before the test, back after it: a command run by a
    test (``main([...])``) sets it up to write to that test's captured stderr, closed after it."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    silenced = [logging.getLogger(name) for name in SILENCED]
    silenced_levels = [logger.level for logger in silenced]
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
    for logger, silenced_level in zip(silenced, silenced_levels, strict=True):
        logger.setLevel(silenced_level)
    logging.captureWarnings(False)
