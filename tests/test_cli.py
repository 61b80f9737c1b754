"""The command line as an operator meets it: run as a real process, like ``python main.py``."""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import json
import os
import runpy
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from shopkeep.cli import main
from shopkeep.cli.provider_flags import provider_url
from shopkeep.store.migrations import MIGRATIONS
from tests.shop.conftest import as_written_before_the_last_migration, schema_of

TOO_LONG = "x" * 300 + ".db"
"""A file name no file system here takes (255 bytes at most)."""
ROOT = Path(__file__).resolve().parent.parent
SERVE_FLAGS = {
    "--db": "SHOPKEEP_DB",
    "--host": "SHOPKEEP_HOST",
    "--port": "SHOPKEEP_PORT",
    "--synchronous": "SHOPKEEP_SYNCHRONOUS",
    "--writer": "SHOPKEEP_WRITER",
    "--order-timeout": "SHOPKEEP_ORDER_TIMEOUT",
    "--max-unpaid-orders": "SHOPKEEP_MAX_UNPAID_ORDERS",
    "--keepalive-timeout": "SHOPKEEP_KEEPALIVE_TIMEOUT",
    "--read-timeout": "SHOPKEEP_READ_TIMEOUT",
    "--max-connections": "SHOPKEEP_MAX_CONNECTIONS",
    "--admin-token": "SHOPKEEP_ADMIN_TOKEN",
    "--admin-token-file": "SHOPKEEP_ADMIN_TOKEN_FILE",
    "--gateway-secret": "SHOPKEEP_GATEWAY_SECRET",
    "--gateway-secret-file": "SHOPKEEP_GATEWAY_SECRET_FILE",
    "--sandbox": "SHOPKEEP_SANDBOX",
    "--sandbox-callback-url": "SHOPKEEP_SANDBOX_CALLBACK_URL",
    "--gateway": "SHOPKEEP_GATEWAY",
    "--currency": "SHOPKEEP_CURRENCY",
    "--public-url": "SHOPKEEP_PUBLIC_URL",
    "--refund-query-after": "SHOPKEEP_REFUND_QUERY_AFTER",
    "--alipay-app-id": "SHOPKEEP_ALIPAY_APP_ID",
    "--alipay-private-key-file": "SHOPKEEP_ALIPAY_PRIVATE_KEY_FILE",
    "--alipay-public-key-file": "SHOPKEEP_ALIPAY_PUBLIC_KEY_FILE",
    "--alipay-url": "SHOPKEEP_ALIPAY_URL",
    "--wechatpay-mch-id": "SHOPKEEP_WECHATPAY_MCH_ID",
    "--wechatpay-app-id": "SHOPKEEP_WECHATPAY_APP_ID",
    "--wechatpay-private-key-file": "SHOPKEEP_WECHATPAY_PRIVATE_KEY_FILE",
    "--wechatpay-cert-serial": "SHOPKEEP_WECHATPAY_CERT_SERIAL",
    "--wechatpay-apiv3-key-file": "SHOPKEEP_WECHATPAY_APIV3_KEY_FILE",
    "--wechatpay-platform-public-key-file": "SHOPKEEP_WECHATPAY_PLATFORM_PUBLIC_KEY_FILE",
    "--wechatpay-url": "SHOPKEEP_WECHATPAY_URL",
    "--stripe-api-key-file": "SHOPKEEP_STRIPE_API_KEY_FILE",
    "--stripe-webhook-secret-file": "SHOPKEEP_STRIPE_WEBHOOK_SECRET_FILE",
    "--stripe-api-base": "SHOPKEEP_STRIPE_API_BASE",
}
BENCH_FLAGS = (
    "--url", "--embedded", "--duration", "--concurrency", "--mix", "--seed", "--admin-token",
    "--gateway-secret", "--order-timeout", "--db", "--max-error-rate", "--settle", "--interval",
    "--rate", "--warmup", "--ramp", "--threshold", "--compare", "--json", "--html",
)  # fmt: skip
CHECKS = ("stock", "wallet", "points", "coupons", "money", "states", "refunds")
START_TIMEOUT_S = 30.0
LOG_LINES = 200


def run_main(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "error:" in lines[0]
    for word in words:
        assert word in lines[0]


def test_serve_help_explains_every_flag_and_its_environment_variable() -> None:
    result = run_main("serve", "--help")

    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines anywhere
    for flag, variable in SERVE_FLAGS.items():
        assert flag in text
        assert variable in text, variable
    assert text.count("visible to every local user (ps)") == 2  # the token and the secret


@pytest.mark.parametrize("command", ["demo", "bench", "audit"])
def test_each_command_has_help(command: str) -> None:
    result = run_main(command, "--help")

    assert result.returncode == 0, result.stderr
    assert "--db" in result.stdout


def test_bench_help_explains_every_flag_and_the_credentials_environment() -> None:
    result = run_main("bench", "--help")

    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for flag in BENCH_FLAGS:
        assert flag in text, flag
    for variable in ("SHOPKEEP_ADMIN_TOKEN", "SHOPKEEP_GATEWAY_SECRET", "SHOPKEEP_URL"):
        assert variable in text, variable


def test_serve_on_a_missing_directory_fails_in_one_line() -> None:
    result = run_main("serve", "--sandbox", "--db", "/nonexistent-dir/x.db")

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("shopkeep serve: error:")
    assert "/nonexistent-dir/x.db" in lines[0]


def test_serve_on_a_directory_fails_in_one_line(tmp_path: Path) -> None:
    result = run_main("serve", "--sandbox", "--db", str(tmp_path))

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        "shopkeep serve: error: argument --db (env SHOPKEEP_DB): cannot use database path"
    )


def test_serve_in_another_currency_than_its_database_keeps_fails_in_one_line(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "s.db")
    assert run_main("demo", "--db", path).returncode == 0  # a shop in CNY

    result = run_main("serve", "--sandbox", "--db", path, "--currency", "USD", "--port", "0")

    assert_one_line_error(result, "--currency (env SHOPKEEP_CURRENCY)", "keeps its amounts in CNY")


def test_serve_refused_for_another_currency_leaves_an_older_shopkeeps_database_unmigrated(
    tmp_path: Path,
) -> None:
    # the credentials' first open migrated it before the shop's check refused the start
    path = str(tmp_path / "s.db")
    assert run_main("demo", "--db", path).returncode == 0  # a shop in CNY
    as_written_before_the_last_migration(path)
    older = schema_of(path)

    result = run_main("serve", "--sandbox", "--db", path, "--currency", "USD", "--port", "0")

    assert_one_line_error(result, "--currency (env SHOPKEEP_CURRENCY)", "keeps its amounts in CNY")
    assert schema_of(path) == older


async def sandbox_payment_in(path: str) -> None:
    """A shop on the sandbox at ``path`` with one order paid (it may yet be refunded)."""
    from shopkeep.shop import Shop

    async with Shop.open(path, gateway="sandbox") as shop:
        ann = await shop.create_user("ann", balance=0)
        tea = await shop.create_goods("tea", price=5_000, stock=5)
        order = await shop.place_order(ann.user.id, [(tea.id, 1)])
        payment = (await shop.start_payment(order.id, user_id=ann.user.id)).payment
        assert shop.gateway is not None
        assert await shop.gateway.complete(payment.id, order.id, payment.amount, "succeeded")


def test_serve_on_another_provider_than_its_payments_went_through_fails_in_one_line(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "s.db")
    asyncio.run(sandbox_payment_in(path))
    for name, secret in (("key", "sk_test_cli\n"), ("whsec", "whsec_cli\n")):
        (tmp_path / name).write_text(secret)
        (tmp_path / name).chmod(0o600)  # else said too (secret_file_not_private)

    result = run_main(
        "serve", "--gateway", "stripe", "--stripe-api-key-file", str(tmp_path / "key"),
        "--stripe-webhook-secret-file", str(tmp_path / "whsec"), "--db", path, "--port", "0",
    )  # fmt: skip

    assert_one_line_error(result, "--gateway (env SHOPKEEP_GATEWAY)", "1 through sandbox")


def test_serve_on_an_empty_host_refuses_rather_than_listen_on_every_interface() -> None:
    result = run_main("serve", "--sandbox", "--host", "", "--port", "0")

    assert_one_line_error(result, "--host (env SHOPKEEP_HOST)", "0.0.0.0")


@pytest.mark.parametrize(
    "schema",
    [
        "CREATE TABLE notes (text TEXT)",
        "CREATE TABLE notes (text TEXT); PRAGMA user_version = 5",
        "PRAGMA user_version = 3",  # a version, no table
        "CREATE TABLE users (name TEXT); PRAGMA user_version = 1",  # a table of ours by name
    ],
)
def test_serve_on_another_programs_database_refuses_and_leaves_it_as_it_was(
    tmp_path: Path, schema: str
) -> None:
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.executescript(schema)
    before = other.read_bytes()

    result = run_main("serve", "--sandbox", "--db", str(other), "--port", "0")

    assert_one_line_error(result, "--db (env SHOPKEEP_DB)", "another program's")
    assert other.read_bytes() == before
    assert not Path(f"{other}-wal").exists()


def demo_with_a_damaged_page(
    path: Path, btree: str, at: int = 0, damage: bytes = b"\xff" * 32
) -> Path:
    """The demo shop at ``path``, ``damage`` written ``at`` bytes into the first page of its
    B-tree ``btree`` (by default over its header)."""
    assert run_main("demo", "--db", str(path)).returncode == 0
    with closing(sqlite3.connect(path)) as conn:
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (btree,))
    with path.open("r+b") as file:
        file.seek((int(root[0]) - 1) * page_size + at)
        file.write(damage)
    return path


def test_serve_on_a_database_with_damaged_pages_fails_in_one_line(tmp_path: Path) -> None:
    # the orders' B-tree, which the start reads to recover
    path = demo_with_a_damaged_page(tmp_path / "s.db", "orders")

    result = run_main("serve", "--sandbox", "--db", str(path), "--port", "0")

    assert_one_line_error(result, "--db (env SHOPKEEP_DB)", "malformed")
    assert "Traceback" not in result.stderr


def test_serve_on_a_database_damaged_where_it_starts_without_reading_changes_nothing(
    tmp_path: Path,
) -> None:
    # an index only a later request reads: the server started, wrote its credentials into
    # the damaged file, and answered 500s (or an audit that said ok) once it met the page
    path = demo_with_a_damaged_page(tmp_path / "s.db", "payment_log_by_order")
    before, files = path.read_bytes(), sorted(tmp_path.iterdir())

    result = run_main("serve", "--sandbox", "--db", str(path), "--port", "0")

    assert_one_line_error(result, "--db (env SHOPKEEP_DB)", "the database is damaged")
    assert path.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == files


def test_serve_on_a_database_whose_index_disagrees_with_its_table_is_refused(
    tmp_path: Path,
) -> None:
    # a few bytes in a user's entry of the token index: SQLite's quick check found the file
    # ok, and the server started, to answer 503 "malformed" to that user's token replaced
    path = demo_with_a_damaged_page(
        tmp_path / "s.db", "sqlite_autoindex_users_1", at=4000, damage=b"A" * 8
    )
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]

    result = run_main("serve", "--sandbox", "--db", str(path), "--port", "0")

    assert_one_line_error(result, "--db (env SHOPKEEP_DB)", "missing from index")


def test_serve_on_a_port_taken_fails_in_one_line_naming_host_and_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_main("serve", "--sandbox", "--db", str(tmp_path / "s.db"), "--port", port)

    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "shopkeep serve: error: argument --host (env SHOPKEEP_HOST), --port (env SHOPKEEP_PORT): "
        f"cannot listen on 127.0.0.1:{port}: "
    )
    assert result.stdout == ""  # no admin token shown by a start that did not serve
    assert list(tmp_path.iterdir()) == []  # the address is tried before the database is made


@pytest.mark.parametrize(
    "args",
    [
        ("serve", "--port", "notanumber"),
        ("serve", "--nope"),
        ("serve", "--order-timeout", "-1"),
        ("serve", "--order-timeout", "0"),
        ("serve", "--order-timeout", "nan"),
        ("serve", "--order-timeout", "1e-9"),  # every order canceled as it is born
        ("serve", "--read-timeout", "1e-9"),
        ("serve", "--max-unpaid-orders", "0"),
        ("serve", "--keepalive-timeout", "0"),
        ("serve", "--read-timeout", "inf"),
        ("serve", "--max-connections", "0"),
        ("serve", "--admin-token", "short"),
        ("serve", "--admin-token", "sixteen-or-more-but-caf\u00e9"),
        ("serve", "--admin-token", "a" * 513),  # longer than any bearer header the API takes
        ("serve", "--admin-token-file", "/nonexistent/token"),
        ("serve", "--admin-token-file", "main.py", "--admin-token", "a" * 20),
        ("serve", "--gateway-secret-file", "/nonexistent/secret"),
        ("serve", "--sandbox-callback-url", "ftp://x"),
        ("serve", "--gateway", "alipay", "--alipay-url", "notaurl"),
        ("serve", "--gateway", "wechatpay", "--wechatpay-url", "ftp://x"),
        ("serve", "--gateway", "stripe", "--stripe-api-base", "api.stripe.com"),
        ("serve",),  # no gateway
        ("serve", "--gateway", "paypal"),
        ("serve", "--sandbox", "--gateway", "stripe"),
        ("serve", "--sandbox", "--refund-query-after", "soon"),
        ("demo", "--nope"),
        ("demo", "--admin-token", "sixteen-or-more-but-\x01"),  # serve would refuse it
        ("audit", "--nope"),
        ("bench",),
        ("bench", "--url", "http://127.0.0.1:1"),  # no admin token
        ("bench", "--url", "ftp://x", "--admin-token", "a" * 20),
        ("bench", "--embedded", "--mix", "teleport=1"),
        ("bench", "--embedded", "--duration", "0"),
        ("bench", "--embedded", "--warmup", "1e-9"),
        ("bench", "--embedded", "--concurrency", "0"),
        ("bench", "--embedded", "--concurrency", "100000000"),  # a user each, made first
        ("bench", "--embedded", "--rate", "1e9"),  # a schedule no loop keeps
        ("bench", "--embedded", "--max-error-rate", "2"),
        ("bench", "--embedded", "--url", "http://127.0.0.1:1"),
        ("bench", "--embedded", "--threshold", "place.p99<50"),
        ("bench", "--embedded", "--threshold", "teleport.p99<5ms"),
        ("bench", "--embedded", "--threshold", "dropped<1%"),  # a closed loop drops nothing
        ("bench", "--embedded", "--warmup", "soon"),
        ("bench", "--embedded", "--ramp", "-1s"),
        ("bench", "--embedded", "--compare", "/nonexistent/previous.json"),
        ("bench", "--embedded", "--compare", "main.py"),
        ("bench", "--embedded", "--db", "/nonexistent/dir/bench.db"),
        ("bench", "--embedded", "--json", "/nonexistent/dir/report.json"),
        ("bench", "--embedded", "--json", "shopkeep"),  # a directory
        ("bench", "--embedded", "--html", "/nonexistent/dir/report.html"),
        (
            "bench",
            "--url",
            "http://127.0.0.1:1",
            "--admin-token",
            "a" * 20,
            "--mix",
            "duplicate_callback=1",
        ),  # a callback sent twice needs the gateway secret
        # a file name longer than the file system takes
        ("audit", "--db", TOO_LONG),
        ("demo", "--db", TOO_LONG),
        ("serve", "--sandbox", "--db", TOO_LONG),
        ("serve", "--sandbox", "--db", "a-folder-to-be/"),  # a trailing slash: no file
        ("demo", "--db", " "),
        ("bench", "--embedded", "--json", TOO_LONG),
        ("backup", "--db", TOO_LONG, "--to", "copy.db"),
        ("backup", "--db", "main.py", "--to", "y" * 250 + ".db"),  # and ".partial" past it
        # a base URL the routes follow: its query or fragment would come before them
        ("serve", "--sandbox", "--public-url", "https://shop.example/?a=1"),
        ("serve", "--sandbox", "--public-url", "https://shop.example#top"),
        ("serve", "--sandbox", "--wechatpay-url", "https://api.example/?"),
        ("bench", "--url", "http://127.0.0.1:8080/?x=1"),
        ("serve", "--sandbox", "--public-url", "http://sh op.example"),
        ("serve", "--sandbox", "--rate-limit", "1e-300"),  # its Retry-After: 300 digits
        # a file that never ends, given as a secret or a key: read to its first 64 KiB only
        ("serve", "--sandbox", "--admin-token-file", "/dev/zero"),
        (
            "serve",
            "--gateway",
            "stripe",
            "--stripe-api-key-file",
            "/dev/zero",
            "--stripe-webhook-secret-file",
            "/dev/zero",
        ),
    ],
)
def test_a_bad_flag_is_a_one_line_usage_error(args: tuple[str, ...]) -> None:
    result = run_main(*args)

    assert_one_line_error(result)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("token", ["sixteen-or-more-chars ", " sixteen-or-more-chars"])
def test_an_admin_token_with_a_space_at_an_end_is_refused_before_anything_is_kept(
    tmp_path: Path, token: str
) -> None:
    # HTTP drops a header's end spaces, so no request could carry it: it was taken, retired
    # the generated token, and locked the admin out of the API and the console
    result = run_main("serve", "--sandbox", "--db", str(tmp_path / "s.db"), "--admin-token", token)

    assert_one_line_error(
        result, "shopkeep serve: error: argument --admin-token (env SHOPKEEP_ADMIN_TOKEN): "
        "begins or ends with a space, which no request's Authorization header can carry: "
        "remove it (see --help)",
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag", ["--stripe-api-base", "--alipay-url", "--wechatpay-url"])
def test_a_provider_reached_over_plain_http_elsewhere_than_this_machine_is_refused(
    tmp_path: Path, flag: str
) -> None:
    # every request would carry its key (Authorization: Bearer sk_...) in clear
    result = run_main("serve", "--sandbox", "--db", str(tmp_path / "s.db"),
                      flag, "http://api.stripe.example")

    assert_one_line_error(result)
    assert "a provider is reached over https (plain http only to this machine" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9"])
def test_a_local_fake_of_a_provider_may_be_reached_over_plain_http(url: str) -> None:
    assert provider_url(url) == url


def test_a_flag_cut_short_is_unknown_and_the_value_after_it_is_not_repeated() -> None:
    # argparse would take it for --stripe-api-key-file and print the key back as a file name
    result = run_main("serve", "--gateway", "stripe", "--stripe-api-key", "sk_test_secret")

    assert_one_line_error(
        result, "shopkeep serve: error: unrecognized arguments: --stripe-api-key (and 1 value)"
    )
    assert "sk_test_secret" not in result.stderr
    assert "SHOPKEEP_STRIPE_API_KEY " not in result.stderr  # an unknown flag has no variable


def test_an_unknown_flag_before_the_command_is_refused_by_the_program_not_the_command() -> None:
    result = run_main("--bogus", "serve", "--sandbox")

    assert_one_line_error(result, "shopkeep: error: unrecognized arguments: --bogus")


def test_serve_without_a_gateway_refuses_naming_the_choices(tmp_path: Path) -> None:
    result = run_main("serve", "--db", str(tmp_path / "shop.db"))

    assert_one_line_error(result, "--gateway", "sandbox", "alipay", "wechatpay", "stripe")
    assert not (tmp_path / "shop.db").exists()


@pytest.mark.parametrize("gateway", ["alipay", "wechatpay", "stripe"])
def test_a_provider_without_its_credentials_refuses_in_one_line(
    tmp_path: Path, gateway: str
) -> None:
    result = run_main("serve", "--gateway", gateway, "--db", str(tmp_path / "shop.db"))

    assert_one_line_error(result, f"--{gateway}-")
    assert not (tmp_path / "shop.db").exists()  # refused before the database was touched


@pytest.mark.parametrize("gateway", ["alipay", "wechatpay"])
def test_a_provider_told_where_to_call_back_refuses_port_0_without_a_public_url(
    tmp_path: Path, gateway: str
) -> None:
    # its notify_url said port 0, the port being chosen only once the server listens
    result = run_main("serve", "--gateway", gateway, "--port", "0",
                      "--db", str(tmp_path / "shop.db"))  # fmt: skip

    assert_one_line_error(result, "is 0", "give --public-url (env SHOPKEEP_PUBLIC_URL)")
    assert not (tmp_path / "shop.db").exists()


@pytest.mark.parametrize("flag", ["--admin-token-file", "--stripe-api-key-file"])
def test_a_fifo_nobody_writes_given_as_a_secret_file_is_refused_in_one_line(
    tmp_path: Path, flag: str
) -> None:
    # its open waited for a writer for ever, the server deaf to Ctrl-C and SIGTERM
    fifo = tmp_path / "secret"
    os.mkfifo(fifo)
    secret = tmp_path / "webhook"
    secret.write_text("whsec_test\n")
    gateway = ["--sandbox"] if flag == "--admin-token-file" else [
        "--gateway", "stripe", "--stripe-webhook-secret-file", str(secret)
    ]

    result = run_main("serve", *gateway, flag, str(fifo), "--db", str(tmp_path / "shop.db"))

    assert_one_line_error(result, flag)
    assert not (tmp_path / "shop.db").exists()


def test_a_negative_order_timeout_is_refused_in_one_line() -> None:
    result = run_main("serve", "--order-timeout", "-1")

    assert_one_line_error(result, "--order-timeout")


def test_a_bad_environment_variable_is_refused_in_one_line() -> None:
    env = {**os.environ, "SHOPKEEP_SANDBOX": "maybe"}

    result = run_main("serve", env=env)

    assert_one_line_error(result, "SHOPKEEP_SANDBOX")


@pytest.mark.parametrize(
    ("args", "variable", "said"),
    [
        (("serve", "--writer", "fork"), None, "--writer"),
        (("serve",), "fork", "SHOPKEEP_WRITER"),
        (("bench", "--embedded", "--rate", "0"), None, "--rate"),
    ],
)
def test_a_bad_writer_or_rate_is_refused_in_one_line(
    args: tuple[str, ...], variable: str | None, said: str
) -> None:
    env = {**os.environ, "SHOPKEEP_WRITER": variable} if variable else None

    result = run_main(*args, env=env)

    assert_one_line_error(result, said)


def test_a_ctrl_c_before_a_command_handles_it_ends_the_command_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt  # as while serve still imports aiohttp

    monkeypatch.setattr("shopkeep.cli.audit.run_audit", interrupted)

    try:
        status = main(["audit", "--db", str(tmp_path / "s.db")])
    except KeyboardInterrupt:  # raised on, it would stop the test run itself
        pytest.fail("the Ctrl-C went through main as a traceback")
    assert status == 128 + signal.SIGINT
    assert capsys.readouterr().err == ""


def test_demo_fills_a_fresh_database_and_prints_ids_and_tokens(tmp_path: Path) -> None:
    result = run_main("demo", "--db", str(tmp_path / "shop.db"))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("admin token: ") and len(line) > 40 for line in lines)
    users = [line for line in lines if " token " in line]
    assert len(users) == 3
    for line in users:
        token = line.split(" token ")[1]
        assert len(token) >= 40
    assert result.stdout.count(" id ") >= 3 + 4 + 3  # users, goods, coupons


def test_demo_whose_reader_goes_away_ends_quietly(tmp_path: Path) -> None:
    # ``shopkeep demo | head -n 1``: the pipe is closed before demo writes
    demo = subprocess.Popen(
        [sys.executable, "main.py", "demo", "--db", str(tmp_path / "shop.db")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert demo.stdout is not None and demo.stderr is not None
    demo.stdout.close()
    stderr = demo.stderr.read().decode()
    assert demo.wait(timeout=60) == 128 + signal.SIGPIPE
    assert "Traceback" not in stderr


def test_demo_refuses_a_database_that_holds_data_and_changes_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "shop.db")
    assert run_main("demo", "--db", db).returncode == 0
    before = Path(db).read_bytes()

    result = run_main("demo", "--db", db)

    assert_one_line_error(result, db)
    assert Path(db).read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["shop.db", "shop.db.lock"]


def test_audit_of_a_clean_database_prints_each_check_and_exits_0(tmp_path: Path) -> None:
    db = str(tmp_path / "shop.db")
    assert run_main("demo", "--db", db).returncode == 0

    result = run_main("audit", "--db", db)

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for check in CHECKS:
        assert any(line.split()[:2] == ["ok", check] for line in lines), check
    assert lines[-1] == "audit: ok"


def test_audit_of_a_missing_file_fails_in_one_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.db")

    result = run_main("audit", "--db", missing)

    assert_one_line_error(result, missing)
    assert not Path(missing).exists()


def test_audit_of_a_folder_says_it_is_a_folder(tmp_path: Path) -> None:
    result = run_main("audit", "--db", str(tmp_path))

    assert_one_line_error(result, str(tmp_path))
    assert "it is a folder, not a database file" in result.stderr


def test_audit_of_a_file_that_is_not_a_database_fails_in_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")

    result = run_main("audit", "--db", str(junk))

    assert_one_line_error(result, str(junk))


def test_audit_of_a_damaged_database_fails_in_one_line_even_where_its_queries_do_not_read(
    tmp_path: Path,
) -> None:
    # an index the invariants' queries never read
    path = demo_with_a_damaged_page(tmp_path / "s.db", "payment_log_by_order")

    result = run_main("audit", "--db", str(path))

    assert_one_line_error(result, "cannot audit", "damaged")


def test_audit_and_restore_refuse_a_database_a_newer_shopkeep_wrote(tmp_path: Path) -> None:
    # both said ok, and the restore put aside the working database for one serve refuses
    newer, target = tmp_path / "newer.db", tmp_path / "shop.db"
    assert run_main("demo", "--db", str(newer)).returncode == 0
    assert run_main("demo", "--db", str(target)).returncode == 0
    with closing(sqlite3.connect(newer)) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    working = target.read_bytes()

    audited = run_main("audit", "--db", str(newer))
    restored = run_main("restore", "--from", str(newer), "--db", str(target))

    assert_one_line_error(audited, "cannot audit", "is newer than this shopkeep knows")
    assert audited.returncode == 2
    assert restored.returncode != 0 and "is newer than this shopkeep knows" in restored.stderr
    assert target.read_bytes() == working
    assert not list(tmp_path.glob("shop.db.replaced-*"))


async def start_serve(db: Path, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    """``serve --sandbox`` on a free port of 127.0.0.1, and its URL once it logs that it serves."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "main.py", "serve", "--db", str(db), "--host", "127.0.0.1",
        "--port", "0", "--sandbox", *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        for _ in range(LOG_LINES):
            line = await asyncio.wait_for(process.stderr.readline(), START_TIMEOUT_S)
            assert line, "serve exited before serving"
            event = json.loads(line)
            if event["event"] == "serving":
                return process, str(event["url"])
    except BaseException:
        process.kill()
        await process.wait()
        raise
    raise AssertionError("serve never said it serves")


async def stop_serve(process: asyncio.subprocess.Process) -> str:
    """SIGTERM; the exit status must be 0. Everything it printed on stdout."""
    process.send_signal(signal.SIGTERM)
    stdout, _ = await asyncio.wait_for(process.communicate(), START_TIMEOUT_S)
    assert process.returncode == 0
    return stdout.decode()


def admin_get(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=START_TIMEOUT_S) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


async def test_serve_prints_a_generated_admin_token_once_and_accepts_it_after(
    tmp_path: Path,
) -> None:
    db = tmp_path / "shop.db"

    first, url = await start_serve(db)
    printed = (await stop_serve(first)).split()
    again, url = await start_serve(db)
    try:
        token = printed[-1]
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            (kept,) = conn.execute(
                "SELECT value FROM settings WHERE key = 'admin_token_hash'"
            ).fetchone()
        status = await asyncio.to_thread(admin_get, f"{url}/v1/audit", token)
        by_hash = await asyncio.to_thread(admin_get, f"{url}/v1/audit", kept)
    finally:
        second = await stop_serve(again)

    assert "admin token" in " ".join(printed)
    assert second == ""  # shown once: the second start cannot know it
    assert kept == hashlib.sha256(token.encode()).hexdigest()
    assert (status, by_hash) == (200, 401)


async def test_serve_takes_the_admin_token_from_a_file_kept_out_of_ps(tmp_path: Path) -> None:
    token_file = tmp_path / "admin-token"
    token = "token-from-a-file-0123456789"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)

    process, url = await start_serve(tmp_path / "shop.db", "--admin-token-file", str(token_file))
    try:
        status = await asyncio.to_thread(admin_get, f"{url}/v1/audit", token)
        wrong = await asyncio.to_thread(admin_get, f"{url}/v1/audit", "another-token-0123456789")
    finally:
        printed = await stop_serve(process)

    assert (status, wrong) == (200, 401)
    assert printed == ""  # a configured token: none generated, none printed


def test_a_checkout_run_by_a_python_without_the_dependencies_says_what_to_do_in_one_line() -> None:
    # `python3 main.py serve` with the system's Python: a twelve-line traceback
    without_msgspec = (
        "import runpy, sys; sys.modules['msgspec'] = None; "
        "sys.argv = ['main.py', 'serve', '--sandbox']; "
        "runpy.run_path('main.py', run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", without_msgspec], cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("shopkeep: msgspec is not installed for ")
    assert "run `make install`" in line


def interrupt_loading_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C as ``shopkeep.cli`` is imported (the first fraction of a second of a command)."""
    real_import = builtins.__import__

    def interrupted(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "shopkeep.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)


def test_ctrl_c_while_python_m_shopkeep_loads_exits_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    interrupt_loading_the_command_line(monkeypatch)

    with pytest.raises(SystemExit) as ended:
        runpy.run_module("shopkeep", run_name="__main__")

    assert ended.value.code == 130


def test_ctrl_c_while_main_py_loads_exits_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkout_main = runpy.run_path(str(Path(__file__).parents[1] / "main.py"))
    interrupt_loading_the_command_line(monkeypatch)

    assert checkout_main["run"]() == 130
