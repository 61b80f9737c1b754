"""The group-commit writer's thread: runs one function at a time, answers on the event loop.

Why not ``loop.run_in_executor`` on a one-thread ``ThreadPoolExecutor``: for each batch that
builds a ``concurrent.futures.Future`` (a Condition, so a lock), a work item, a semaphore probe,
then chains the result back through done callbacks; the loop holds the GIL for all of it, and it
showed in profiles of the commit benchmark at a few percent of the loop's time. Here a batch is
one ``SimpleQueue.put`` (C) on the way in and one ``call_soon_threadsafe`` on the way out.

The thread is a daemon: a store that is closed stops it after its last batch
(:meth:`WriterThread.stop`); a program that exits without closing its store does not hang on
it. A transaction cut by that exit is rolled back by SQLite at the next open, like any crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any], asyncio.AbstractEventLoop]


class WriterThread:
    """One thread that runs the functions it is given, in order, one at a time."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def run(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        """Run ``fn(*args)`` on the thread after what was given before; a future of its result
        on ``loop``."""
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, args, future, loop))
        return future

    def stop(self) -> None:
        """Finish what was given, then end the thread (blocking)."""
        self._jobs.put(None)
        self._thread.join()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, args, future, loop = job
            try:
                result = fn(*args)
            except BaseException as exc:  # the caller's to see, whatever it is
                _answer(loop, _set_exception, future, exc)
            else:
                _answer(loop, _set_result, future, result)


def _answer(
    loop: asyncio.AbstractEventLoop,
    setter: Callable[[asyncio.Future[Any], Any], None],
    future: asyncio.Future[Any],
    value: Any,
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(setter, future, value)


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
