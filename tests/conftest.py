"""Fixtures shared by every test folder."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest


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
