"""``python main.py bench`` end to end: against a server this test starts, and embedded.

Each run is short (a few seconds at concurrency 8): whether its figures are good is a real
run's business; here every operation of the default mix has to show up, with no errors, the
audit has to pass, and the reports have to hold what they promise. A server whose books were
broken behind its back (an UPDATE of a goods' stock through sqlite3, WAL lets it in while the
server runs) must make the bench exit 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from shopkeep.bench.load.http_target import HttpTarget
from shopkeep.bench.load.target import Customer
from shopkeep.bench.processes import serving
from shopkeep.http.server import ServeOptions, running
from shopkeep.payments.settings import ProviderSettings

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "bench-admin-token-0123456789"
SECRET = "bench-gateway-secret-0123456789"
CREDENTIALS = {"SHOPKEEP_ADMIN_TOKEN": ADMIN, "SHOPKEEP_GATEWAY_SECRET": SECRET}
SERVE_FLAGS = ("--sandbox", "--order-timeout", "1")
EVERY_OPERATION = {
    "place", "place_async", "await_placed", "get_order", "start_payment",
    "complete_success", "await_paid", "complete_failure", "callback", "callback_duplicate",
    "await_timeout", "callback_late", "get_refunds", "await_refund", "cancel_unpaid",
    "cancel_paid", "ship", "deliver", "request_return", "approve_return",
}  # fmt: skip


def bench(
    *args: str, env: dict[str, str] | None = None, secret: bool = True
) -> subprocess.CompletedProcess[str]:
    """``main.py bench`` with ``args``, to its end (stdout and stderr captured); without
    ``secret``, not told the server's gateway secret."""
    told = {**os.environ, **CREDENTIALS, **(env or {})}
    if not secret:
        del told["SHOPKEEP_GATEWAY_SECRET"]
    return subprocess.run(
        [sys.executable, "main.py", "bench", "--concurrency", "8", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env=told,
    )  # fmt: skip


def assert_a_clean_run_of_every_operation(report: dict[str, Any]) -> None:
    operations = report["operations"]
    assert set(operations) >= EVERY_OPERATION, EVERY_OPERATION - set(operations)
    for name, figures in operations.items():
        assert figures["count"] > 0, name
        assert figures["errors"] == {}, (name, figures["errors"])
        assert figures["p99_ms"] >= figures["p50_ms"] > 0, name
    assert report["totals"]["errors"] == 0
    assert report["audit_ok"] is True
    assert report["audit_quiet"] is True
    assert report["passed"] is True
    assert 0 < report["client_cpu"]["utilization"] < 4
    assert report["resident_memory_bytes"]["start"] > 0
    assert report["resident_memory_bytes"]["end"] > 0
    assert report["series"] and report["series"][0]["ops_per_s"] > 0


class ChartCounter(HTMLParser):
    """Counts the tags of an HTML page and what its tables and charts hold."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.scripts_with_src = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag in ("script", "link", "img") and any(k in ("src", "href") for k, _ in attrs):
            self.scripts_with_src += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


async def test_a_short_bench_against_a_server_runs_every_operation_and_passes_the_audit(
    tmp_path: Path,
) -> None:
    out, page = tmp_path / "bench.json", tmp_path / "bench.html"
    async with serving(tmp_path, *SERVE_FLAGS, env=CREDENTIALS) as server:
        result = await asyncio.to_thread(
            bench, "--url", server.url, "--duration", "4", "--json", str(out),
            "--html", str(page),
        )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["mode"] == "http"
    assert_a_clean_run_of_every_operation(report)
    assert "p99_ms" in result.stdout and "audit ok" in result.stdout
    assert "bench " in result.stderr  # the progress line, plain when not on a terminal
    html = ChartCounter()
    html.feed(page.read_text())
    html.close()
    # throughput, latency, memory; the distribution; each operation over time
    assert html.tags["svg"] == 4 + len(report["operations"])
    assert html.tags["polyline"] >= 5
    assert html.scripts_with_src == 0  # self-contained: nothing to fetch
    assert "approve_return" in "".join(html.text)


async def test_a_shop_whose_refunds_never_reach_the_provider_is_not_quiet_and_fails_the_run(
    tmp_path: Path,
) -> None:
    # every refund refused and retried: the audit was ok with nothing "in flight", and the run
    # passed with not one refund paid out
    out = tmp_path / "bench.json"
    options = ServeOptions(
        db=str(tmp_path / "shop.db"), port=0, sandbox=True, admin_token=ADMIN,
        gateway_secret=SECRET, order_timeout_s=1.0,
    )  # fmt: skip
    async with running(options, announce=lambda token: None) as server:
        assert server.gateway is not None
        server.gateway.refunds_failing = True
        result = await asyncio.to_thread(
            bench, "--url", server.url, "--duration", "2", "--mix", "cancel_paid=1",
            "--settle", "2s", "--json", str(out),
        )  # fmt: skip

    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["audit_quiet"] is False and report["audit_ok"] is True
    assert "still in flight in refunds" in result.stdout + result.stderr


async def test_without_the_gateway_secret_late_callbacks_come_from_the_sandbox(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.json"
    async with serving(tmp_path, *SERVE_FLAGS, env=CREDENTIALS) as server:
        result = await asyncio.to_thread(
            bench, "--url", server.url, "--duration", "4", "--json", str(out), secret=False
        )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "journeys duplicate_callback left out" in result.stdout + result.stderr
    operations = json.loads(out.read_text())["operations"]
    assert "callback_duplicate" not in operations and "callback_late" not in operations
    for name in ("complete_late", "await_timeout", "await_refund"):
        assert operations[name]["count"] > 0 and operations[name]["errors"] == {}, name


async def test_the_bench_reads_the_admin_token_and_the_gateway_secret_from_files(
    tmp_path: Path,
) -> None:
    admin, secret = tmp_path / "admin.token", tmp_path / "gateway.secret"
    admin.write_text(f"{ADMIN}\n")
    secret.write_text(f"  {SECRET}\n")
    out = tmp_path / "bench.json"
    async with serving(tmp_path, *SERVE_FLAGS, env=CREDENTIALS) as server:
        result = await asyncio.to_thread(
            bench, "--url", server.url, "--duration", "1", "--json", str(out),
            "--admin-token-file", str(admin), "--gateway-secret-file", str(secret),
            env={"SHOPKEEP_ADMIN_TOKEN": "", "SHOPKEEP_GATEWAY_SECRET": ""},
        )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "journeys duplicate_callback left out" not in result.stdout + result.stderr
    assert json.loads(out.read_text())["operations"]["callback_duplicate"]["errors"] == {}


def test_a_short_embedded_bench_runs_every_operation_and_passes_the_audit(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.json"

    result = bench("--embedded", "--duration", "3", "--order-timeout", "1", "--json", str(out))

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["mode"] == "embedded"
    assert_a_clean_run_of_every_operation(report)
    for name in ("place", "place_async"):  # the orders left unpaid stay under the shop's cap
        assert "too_many_unpaid_orders" not in report["operations"][name]["expected_refusals"]


def create_goods(url: str) -> str:
    request = urllib.request.Request(
        url + "/v1/goods",
        data=json.dumps({"name": "tampered", "price": 100, "stock": 10}).encode(),
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.load(response)["id"])


def goods_names(url: str) -> list[str]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    request = urllib.request.Request(url + "/v1/goods", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return [goods["name"] for goods in json.load(response)["items"]]


async def test_a_server_whose_audit_fails_before_the_run_is_refused_at_the_setup(
    tmp_path: Path,
) -> None:
    # it ran, waited out --settle, and reported the break as the run's own failure
    out = tmp_path / "bench.json"
    async with serving(tmp_path, *SERVE_FLAGS, env=CREDENTIALS) as server:
        goods_id = await asyncio.to_thread(create_goods, server.url)
        with closing(sqlite3.connect(tmp_path / "shop.db", timeout=30)) as conn, conn:
            conn.execute("UPDATE goods SET stock = stock + 7 WHERE id = ?", (int(goods_id),))
        result = await asyncio.to_thread(
            bench, "--url", server.url, "--duration", "1", "--settle", "1", "--json", str(out),
        )  # fmt: skip
        names = await asyncio.to_thread(goods_names, server.url)

    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert "the shop fails its audit before the run (stock: " in line
    assert not out.exists() and names == ["tampered"]  # no run, nothing set up


# -- what CI gates on: thresholds, exit statuses, Ctrl-C -------------------------------------

SHORT_EMBEDDED = ("--embedded", "--concurrency", "2", "--duration", "1s", "--mix", "pay=1",
                  "--settle", "10s")  # fmt: skip


def test_a_failed_threshold_exits_3_and_a_passed_one_0_with_the_changes_since_the_last_run(
    tmp_path: Path,
) -> None:
    first, second, page = tmp_path / "first.json", tmp_path / "second.json", tmp_path / "b.html"

    failed = bench(*SHORT_EMBEDDED, "--threshold", "place.p99<0.001ms", "--json", str(first))
    passed = bench(
        *SHORT_EMBEDDED, "--threshold", "place.p99<60s", "--threshold", "errors<0.1%",
        "--compare", str(first), "--json", str(second), "--html", str(page),
    )  # fmt: skip

    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "bench: threshold place.p99<0.001ms failed: measured" in failed.stderr
    assert json.loads(first.read_text())["thresholds"][0]["passed"] is False
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "ok      place.p99<60s" in passed.stdout
    assert f"compared with {first}" in passed.stdout
    report = json.loads(second.read_text())
    assert report["thresholds"][1] == {**report["thresholds"][1], "passed": True}
    assert {"place.p99_ms", "total.per_s"} <= {c["figure"] for c in report["comparison"]["changes"]}
    html = ChartCounter()
    html.feed(page.read_text())
    assert "place latency" in html.text and "Latency distribution" in "".join(html.text)
    assert html.scripts_with_src == 0


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a disk that is full)")
def test_a_report_that_cannot_be_written_after_the_run_exits_5_and_the_table_is_printed(
    tmp_path: Path,
) -> None:
    page = tmp_path / "bench.html"
    # every write fails: disk full; the other report is written all the same
    result = bench(*SHORT_EMBEDDED, "--json", "/dev/full", "--html", str(page))

    assert result.returncode == 5, result.stdout + result.stderr
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert "place" in result.stdout  # the table came first
    assert "bench: cannot write the --json report /dev/full:" in result.stderr
    # the table said 0 before the report failed: the last line says the status it is now
    assert result.stderr.splitlines()[-1].endswith("report was not written: exit status 5")
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a disk that is full)")
def test_an_html_report_that_cannot_be_written_leaves_its_status_in_the_json_and_table(
    tmp_path: Path,
) -> None:
    figures = tmp_path / "bench.json"

    result = bench(*SHORT_EMBEDDED, "--json", str(figures), "--html", "/dev/full")

    assert result.returncode == 5, result.stdout + result.stderr
    assert json.loads(figures.read_text())["exit_status"] == 5  # it said 0
    assert "(exit status 5)" in result.stdout


def test_one_file_for_both_reports_is_a_one_line_usage_error(tmp_path: Path) -> None:
    both = str(tmp_path / "report")

    result = bench(*SHORT_EMBEDDED, "--json", both, "--html", both)

    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "--html" in line and "report's file too" in line
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("report", ["--json", "--html"])
def test_a_report_is_never_written_over_a_database(tmp_path: Path, report: str) -> None:
    shop = tmp_path / "shop.db"  # a shop's database, one typo from its report's name
    with closing(sqlite3.connect(shop)) as conn, conn:
        conn.execute("CREATE TABLE kept (x)")
    run_db = str(tmp_path / "run.db")  # the run's own, made by the run

    for named in (str(shop), run_db):
        result = bench(*SHORT_EMBEDDED, "--db", run_db, report, named)

        assert result.returncode == 2, result.stdout + result.stderr
        (line,) = result.stderr.splitlines()
        assert report in line and ("SQLite database" in line or "the run's --db" in line)
    assert shop.read_bytes().startswith(b"SQLite format 3")
    assert not Path(run_db).exists()


@pytest.mark.parametrize("name", ["run.db-wal", "run.db-shm", "run.db-journal", ":memory:"])
def test_an_embedded_database_no_shop_could_be_named_is_a_one_line_usage_error(
    tmp_path: Path, name: str
) -> None:
    # the store refused it as the run began: a traceback, and status 1, "the audit failed"
    db = name if name.startswith(":") else str(tmp_path / name)

    result = bench(*SHORT_EMBEDDED, "--db", db)

    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("shopkeep bench: error: argument --db")


def test_in_a_race_of_ship_and_cancel_either_may_win(tmp_path: Path) -> None:
    # in process the first one asked is the first the order handles: which goes first is drawn
    out = tmp_path / "bench.json"

    result = bench(*SHORT_EMBEDDED, "--mix", "cancel_race=1", "--json", str(out))

    assert result.returncode == 0, result.stdout + result.stderr
    operations = json.loads(out.read_text())["operations"]
    for lost_some in ("ship", "cancel_paid"):
        figures = operations[lost_some]
        refused = figures["expected_refusals"].get("invalid_state", 0)
        assert 0 < refused < figures["count"], (lost_some, figures)


def test_a_malformed_threshold_is_a_one_line_usage_error() -> None:
    result = bench("--embedded", "--threshold", "place.p99<50")

    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert (
        "argument --threshold (env SHOPKEEP_THRESHOLD): 'place.p99<50': a latency takes a unit"
        in line
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_ends_the_run_and_still_writes_the_reports_and_removes_its_database(
    tmp_path: Path, signum: signal.Signals
) -> None:
    out, page, temporary = tmp_path / "bench.json", tmp_path / "bench.html", tmp_path / "tmp"
    temporary.mkdir()  # where the embedded shop's temporary database goes
    process = subprocess.Popen(
        [sys.executable, "-m", "shopkeep", "bench", "--embedded", "--concurrency", "2",
         "--duration", "10m", "--json", str(out), "--html", str(page)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **CREDENTIALS, "TMPDIR": str(temporary)},
    )  # fmt: skip
    assert process.stderr is not None
    said = []
    for line in process.stderr:  # the first progress line: the run is under way
        said.append(line)
        if line.startswith("bench ") and "ops" in line:
            break
    assert list(temporary.iterdir())  # the database, under way

    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)

    stderr = "".join(said) + stderr
    assert "Traceback" not in stderr
    report = json.loads(out.read_text())
    assert report["interrupted"] is True and report["elapsed_s"] < 60
    assert process.returncode == report["exit_status"], stdout + stderr
    assert "interrupted: the run was ended early" in stdout
    assert "Interrupted (Ctrl-C or SIGTERM)" in page.read_text()
    assert not list(temporary.iterdir())


def test_ctrl_c_during_the_setup_stops_it_there_with_status_130_and_no_report(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.json"
    # 4,000 workers: adding their shoppers and coupons takes seconds, the Ctrl-C lands in it
    process = subprocess.Popen(
        [sys.executable, "-m", "shopkeep", "bench", "--embedded", "--concurrency", "4000",
         "--duration", "10m", "--json", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **CREDENTIALS},
    )  # fmt: skip
    assert process.stderr is not None
    said = []
    for line in process.stderr:  # the line said before the setup starts
        said.append(line)
        if line.startswith("bench: adding"):
            break

    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)

    stderr = "".join(said) + stderr
    assert process.returncode == 130, stdout + stderr
    assert "bench: interrupted during the setup: nothing was run" in stderr
    assert "Traceback" not in stderr
    assert not out.exists()
    assert time.monotonic() - started < 10


async def test_an_error_rate_above_the_maximum_exits_4(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    # one request a second per shopper: most of the journeys' requests are refused 429
    async with serving(tmp_path, *SERVE_FLAGS, "--rate-limit", "1", env=CREDENTIALS) as server:
        result = await asyncio.to_thread(
            bench, "--url", server.url, "--concurrency", "2", "--duration", "1s", "--mix",
            "pay=1", "--settle", "10s", "--max-error-rate", "0.01", "--json", str(out),
        )  # fmt: skip

    assert result.returncode == 4, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["audit_ok"] is True and report["totals"]["error_rate"] > 0.01
    assert "is above --max-error-rate 1.0000%" in result.stderr


async def test_a_server_not_in_sandbox_mode_is_refused_before_anything_is_created(
    tmp_path: Path,
) -> None:
    key, hook = tmp_path / "stripe.key", tmp_path / "stripe.whsec"
    key.write_text("sk_test_shopkeep\n")
    hook.write_text("whsec_shopkeep\n")
    payments = ProviderSettings(
        gateway="stripe", stripe_api_key_file=str(key), stripe_webhook_secret_file=str(hook),
        stripe_api_base="http://127.0.0.1:9",  # never called: nothing is placed
    )  # fmt: skip
    options = ServeOptions(
        db=str(tmp_path / "shop.db"), port=0, payments=payments, admin_token=ADMIN
    )
    async with running(options, announce=lambda token: None) as server:
        result = await asyncio.to_thread(bench, "--url", server.url, "--duration", "1")
        users = await server.shop.list_users()

    assert result.returncode == 2, result.stdout + result.stderr
    [error] = result.stderr.splitlines()  # one line: nor does it say what it would have added
    assert error.startswith(f"shopkeep bench: error: setup against {server.url} failed: ")
    assert "not in sandbox mode (serve --sandbox)" in error
    assert users.items == []


async def test_a_bench_started_with_its_server_waits_for_it_to_listen(tmp_path: Path) -> None:
    # README's two lines, run at once: the server takes a second or two to listen
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bench_run = await asyncio.create_subprocess_exec(
        sys.executable, "main.py", "bench", "--concurrency", "8", "--duration", "1",
        "--url", f"http://127.0.0.1:{port}", cwd=ROOT, env={**os.environ, **CREDENTIALS},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert bench_run.stderr is not None
    waiting = await asyncio.wait_for(bench_run.stderr.readline(), 60)
    options = ServeOptions(
        db=str(tmp_path / "shop.db"), port=port, sandbox=True, admin_token=ADMIN,
        gateway_secret=SECRET,
    )
    async with running(options, announce=lambda token: None):
        out, _ = await asyncio.wait_for(bench_run.communicate(), 120)

    assert b"does not answer yet: waiting up to 10 s for it to listen" in waiting
    assert bench_run.returncode == 0, out.decode()
    assert b"audit ok" in out


async def test_tls_asked_of_a_server_without_it_fails_the_setup_at_once(
    tmp_path: Path,
) -> None:
    # it said "does not answer yet" and waited ten seconds for a server already listening
    options = ServeOptions(db=str(tmp_path / "shop.db"), port=0, sandbox=True, admin_token=ADMIN)
    async with running(options, announce=lambda token: None) as server:
        https = server.url.replace("http://", "https://")
        result = await asyncio.to_thread(bench, "--url", https, "--duration", "1")

    assert result.returncode == 2, result.stdout + result.stderr
    [error] = result.stderr.splitlines()
    assert f"setup against {https} failed: bad_address" in error and "SSL" in error


def other_server(answers_json: bool) -> web.Application:
    """A server that is not shopkeep: every path answers JSON of its own, or (as a file
    server's) a 404 in plain text."""

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"hello": "world"})

    app = web.Application()
    if answers_json:
        app.router.add_route("*", "/{path:.*}", hello)
    return app


@pytest.mark.parametrize("answers_json", [True, False])
async def test_a_server_that_is_not_shopkeep_is_named_so(answers_json: bool) -> None:
    runner = web.AppRunner(other_server(answers_json))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        result = await asyncio.to_thread(bench, "--url", f"http://127.0.0.1:{port}",
                                         "--duration", "1")
    finally:
        await runner.cleanup()

    assert result.returncode == 2, result.stdout + result.stderr
    [error] = result.stderr.splitlines()
    assert "not_shopkeep: the server is not shopkeep" in error


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:99999", "its port is not a TCP port (0-65535)"),
        ("http://127.0.0.1:abc", "its port is not a TCP port (0-65535)"),
        ("http://:8080", "names no host"),
    ],
)
def test_a_url_with_a_bad_port_or_no_host_is_a_one_line_usage_error(url: str, says: str) -> None:
    result = bench("--url", url, "--duration", "1")

    assert result.returncode == 2
    [error] = result.stderr.splitlines()
    assert says in error and "SHOPKEEP_URL" in error


def test_a_compare_file_nested_past_pythons_stack_is_not_json(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)

    result = bench("--embedded", "--duration", "1", "--compare", str(deep))

    assert result.returncode == 2
    [error] = result.stderr.splitlines()
    assert "is not JSON" in error


@pytest.mark.parametrize("constant", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_a_compare_file_holding_a_number_json_has_not_is_not_json(
    tmp_path: Path, constant: str
) -> None:
    # read by Python's json, it made every change NaN and the next report invalid JSON
    report = tmp_path / "before.json"
    report.write_text(
        '{"operations": {}, "totals": {"p99_ms": ' + constant + "}}", encoding="utf-8"
    )

    result = bench("--embedded", "--duration", "1", "--compare", str(report))

    assert result.returncode == 2
    [error] = result.stderr.splitlines()
    assert "is not JSON" in error


@pytest.mark.parametrize("which", ["a pipe", "a device"])
def test_a_compare_file_that_is_no_regular_file_is_refused_at_once(
    tmp_path: Path, which: str
) -> None:
    # a pipe held the start for ever, /dev/zero was read until memory ran out
    path = tmp_path / "pipe.json"
    if which == "a pipe":
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")

    result = bench("--embedded", "--duration", "1", "--compare", str(path))

    assert result.returncode == 2
    [error] = result.stderr.splitlines()
    assert "is not a regular file" in error


@pytest.mark.parametrize("token", ["admin-token-0123456789\r", "admin\ntoken-0123456789"])
def test_an_admin_token_no_header_can_carry_is_a_one_line_usage_error(token: str) -> None:
    result = bench(
        "--url", "http://127.0.0.1:9", "--duration", "1", env={"SHOPKEEP_ADMIN_TOKEN": token}
    )

    assert result.returncode == 2
    [error] = result.stderr.splitlines()
    assert "not printable ASCII" in error and "SHOPKEEP_ADMIN_TOKEN" in error


@pytest.mark.parametrize(
    "parts",
    [
        '{"operations": {}, "totals": []}',
        # error counts that are not counts: the run went on, and its comparison failed after
        # it in a traceback, its figures lost
        '{"operations": {"place": {"errors": {"unavailable": "3"}}}, "totals": {}}',
        '{"operations": {"place": {"errors": {"x": [1, 2]}}}, "totals": {}}',
        # figures no run writes, compared as changes ("place count -2740.0%")
        '{"operations": {"place": {"count": -5}}, "totals": {}}',
        '{"operations": {"place": {"p99_ms": "x"}}, "totals": {}}',
        '{"operations": {}, "totals": {"count": "many"}}',
        '{"operations": {}, "totals": {"error_rate": true}}',
    ],
)
def test_a_compare_file_whose_parts_are_not_a_reports_is_refused_before_the_run(
    tmp_path: Path, parts: str
) -> None:
    weird = tmp_path / "weird.json"
    weird.write_text(parts)

    result = bench("--embedded", "--duration", "1", "--compare", str(weird))

    assert result.returncode == 2
    [error] = result.stderr.splitlines()
    assert "is not a report of shopkeep bench --json" in error


async def test_an_admin_token_the_server_refuses_stops_the_bench_before_anything_is_created(
    tmp_path: Path,
) -> None:
    options = ServeOptions(
        db=str(tmp_path / "shop.db"), port=0, sandbox=True, admin_token=ADMIN
    )
    async with running(options, announce=lambda token: None) as server:
        result = await asyncio.to_thread(
            bench, "--url", server.url, "--duration", "1",
            env={"SHOPKEEP_ADMIN_TOKEN": "not-the-admin-token-0123456789"},
        )  # fmt: skip
        users = await server.shop.list_users()

    assert result.returncode == 2, result.stdout + result.stderr
    [error] = result.stderr.splitlines()
    assert error.startswith(f"shopkeep bench: error: setup against {server.url} failed: ")
    assert "unauthorized" in error
    assert "--admin-token" in error and "SHOPKEEP_ADMIN_TOKEN" in error  # what to fix
    assert users.items == []


async def test_a_users_token_given_as_the_admin_token_is_refused_before_anything_is_created(
    tmp_path: Path,
) -> None:
    options = ServeOptions(
        db=str(tmp_path / "shop.db"), port=0, sandbox=True, admin_token=ADMIN
    )
    async with running(options, announce=lambda token: None) as server:
        made = await server.shop.create_user("ann")
        result = await asyncio.to_thread(
            bench, "--url", server.url, "--duration", "1",
            env={"SHOPKEEP_ADMIN_TOKEN": made.token},
        )  # fmt: skip
        users = await server.shop.list_users()

    assert result.returncode == 2, result.stdout + result.stderr
    [error] = result.stderr.splitlines()
    assert "the admin token is a user's token" in error and "SHOPKEEP_ADMIN_TOKEN" in error
    assert [user.id for user in users.items] == [made.user.id]


async def test_an_order_parked_for_its_deadline_is_not_kept_waiting_by_the_workers(
    tmp_path: Path,
) -> None:
    # aiohttp's pool is not fair: with one connection a worker, a parked order's poll waited
    # until the workers stopped, seconds the report counted as the server's
    unlimited = ServeOptions(db=str(tmp_path / "shop.db"), port=0, sandbox=True,
                             rate_limit_per_s=0)  # fmt: skip
    async with running(unlimited, announce=lambda token: None) as server:
        made = await server.shop.create_user("ann")
        tea = await server.shop.create_goods("tea", price=100, stock=5)
        order = await server.shop.place_order(made.user.id, [(tea.id, 1)])
        target = HttpTarget(server.url, "unused-admin-token", None, connections=2)
        customer = Customer(str(made.user.id), made.token)
        parked_done = asyncio.Event()
        polls_left = [2_000]

        async def worker() -> None:
            while not parked_done.is_set() and polls_left[0] > 0:
                polls_left[0] -= 1
                await target.get_order(customer, str(order.id))

        try:
            workers = [asyncio.create_task(worker()) for _ in range(2)]
            await asyncio.sleep(0)  # the workers hold both of their connections
            await target.get_order(customer, str(order.id))  # the parked order's poll
            parked_done.set()
            await asyncio.gather(*workers)
        finally:
            await target.close()

    assert polls_left[0] > 0  # answered while the workers were still at it
