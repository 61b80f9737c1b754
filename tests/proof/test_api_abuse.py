"""Group 5, bounded: the API abuse proof against a real ``main.py serve``.

The same run as ``python -m shopkeep.proof api-abuse --examples 5 --flood-seconds 2``: fewer
schemathesis examples than tests/http/test_openapi.py (which fuzzes the in-process app with
the same library), the whole BOLA matrix and mass-assignment list, the unpaid-orders cap,
half-open connections, non-ASCII header bytes, 10,000 GETs of random ids, and a short
flood at ten times the capacity.
"""

from __future__ import annotations

from pathlib import Path

from shopkeep.proof.api_abuse import OVER_THE_CAP, READ_TIMEOUT_S, UNPAID_CAP, run
from shopkeep.proof.api_probes import RANDOM_LOOKUPS, UNSIGNED_CALLBACKS
from shopkeep.proof.api_sockets import HALF_OPEN_CONNECTIONS, HEADER_PROBES, KEY_PROBES


async def test_abuse_finds_no_leak_no_server_error_and_the_caps_hold(tmp_path: Path) -> None:
    figures = await run(tmp_path, examples=5, flood_seconds=2.0)

    assert figures.problems == [], figures.line()
    assert sum(run.cases for run in figures.fuzzed) > 100
    assert figures.bola.probes > 40 and figures.mass.probes > 10
    assert (figures.capped.placed, figures.capped.refused) == (UNPAID_CAP, OVER_THE_CAP)
    assert figures.half_open is not None
    assert figures.half_open.closed == HALF_OPEN_CONNECTIONS
    assert figures.half_open.slowest_s >= READ_TIMEOUT_S * 0.5  # closed by the bound, not at once
    assert figures.header_bytes.probes == len(HEADER_PROBES) + len(KEY_PROBES)
    assert figures.unsigned.refused == figures.unsigned.sent == UNSIGNED_CALLBACKS
    assert figures.unsigned.logged_after == figures.unsigned.logged_before
    assert figures.header_bytes.server_errors == 0
    assert figures.lookups.lookups == RANDOM_LOOKUPS and figures.lookups.other == []
    assert figures.lookups.actors_after <= figures.lookups.actors_before
    assert figures.flooded is not None
    assert figures.flooded.ratio >= 9.5
    assert set(figures.flooded.load.statuses) <= {201, 409, 503}
    assert figures.flooded.load.statuses[503] > 0
    retried = figures.flooded.retried
    assert retried.retried > 0 and retried.placed == retried.replayed_again == retried.retried
    assert figures.line().startswith("api-abuse: schemathesis")
