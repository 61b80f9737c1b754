"""Every log event shopkeep emits is named in the operations guide.

An operator reads a line's ``event`` and looks it up in ``docs/operations.md`` ("Log
events"): a new event that the guide does not name is a line nobody knows what to do about.
The events are collected from the source as written (``log.warning("event_name", ...)``,
over every module of the package), so adding a log call without its row fails here.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "shopkeep"
GUIDE = ROOT / "docs" / "operations.md"

LOG_CALL = re.compile(
    r"\.(?:debug|info|warning|error|critical|exception)\(\s*"
    r"\"([a-z][a-z0-9_]*[a-z0-9])(?:\"|:\s)"
)
"""A log call whose first argument is a literal event name: structlog's ``"name"``, or the
standard library's sentence that begins with it (``"writer_process_ended: the writer ..."``,
the store's writer process, which imports no structlog)."""

STDLIB_EVENT = re.compile(r"[\"']event[\"']\s*:\s*\"([a-z][a-z0-9_]*[a-z0-9])\"")
"""An event given to the standard library's logging in its ``extra`` (``logs.STDLIB_FIELDS``)."""

PASSED_ON: frozenset[str] = frozenset({
    # shopkeep/actors/payment_query.py: ``_again`` logs the event its caller names
    # (``log.info(event, ...)``)
    "payment_still_open",
    "payment_query_failed",
    # shopkeep/actors/refund.py logs ``step.warning``, an event that
    # shopkeep/actors/refund_rules.py puts in each Step (``FAILED_AT_PROVIDER`` among them)
    "refund_closed_at_provider",
    "refund_failed_at_provider",
    "refund_refused_by_provider",
})  # fmt: skip
"""Events logged through a variable, which :data:`LOG_CALL` cannot see at the call."""


def sources() -> dict[Path, str]:
    """Every module of the package, by path."""
    return {path: path.read_text(encoding="utf-8") for path in sorted(PACKAGE.rglob("*.py"))}


def emitted() -> set[str]:
    """The events the code logs: those of its log calls, and those passed on."""
    found: set[str] = set()
    for text in sources().values():
        found.update(LOG_CALL.findall(text))
        found.update(STDLIB_EVENT.findall(text))
    return found | PASSED_ON


def test_the_patterns_find_events_of_every_kind_of_log_call() -> None:
    # a pattern that stopped matching would make the check below pass on nothing: one event
    # of each kind (structlog's, a logger named on the spot, the standard library's sentence
    # and its extra, the access line)
    found = emitted()
    kinds = {"serving", "secret_file_not_private", "batch_plan_failed", "writer_process_ended",
             "request"}  # fmt: skip
    assert kinds <= found, f"not found: {sorted(kinds - found)}"


def test_every_event_passed_on_is_still_in_the_source() -> None:
    text = "\n".join(sources().values())
    gone = sorted(event for event in PASSED_ON if f'"{event}"' not in text)
    assert not gone, f"no longer in the source: remove them from PASSED_ON: {gone}"


def test_every_log_event_the_code_emits_is_named_in_the_operations_guide() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    missing = sorted(event for event in emitted() if f"`{event}`" not in guide)
    assert not missing, f"log events docs/operations.md does not name: {missing}"
