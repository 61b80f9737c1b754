"""Every flag of every command has its SHOPKEEP_ variable, and durations take units (SPEC 8).

Parsed in this process (``build_parser``): the parser is the same one the command runs, and the
environment is the test's (``monkeypatch``). The one-line errors as an operator meets them, in
a real process, are at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shopkeep.cli import build_parser
from shopkeep.cli.flags import OneLineParser, variable_of, with_variables
from shopkeep.cli.values import duration, parse_duration, whole

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("serve", "demo", "bench", "audit", "backup", "restore")
NOT_CONFIGURATION = ("-h", "--help")


def subparsers() -> dict[str, OneLineParser]:
    """Each command's parser, by name."""
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def parse(*argv: str) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if hasattr(args, "check"):
        args.check(args)
    return args


def run_main(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={**os.environ, **env}, check=False,
    )  # fmt: skip


def test_every_command_is_there() -> None:
    assert tuple(subparsers()) == COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_names_its_variable_in_help_and_reads_it(command: str) -> None:
    parser = subparsers()[command]
    declared = {spec.option: spec.variable for spec in parser.flags}

    for action in parser._actions:
        for option in action.option_strings:
            if option in NOT_CONFIGURATION:
                continue
            variable = variable_of(option)
            assert declared.get(option) == variable, f"{command} {option} reads no variable"
            assert action.help is not None and f"env {variable}" in action.help, option
    assert declared  # the walk found flags at all


def test_every_variable_follows_the_flags_name() -> None:
    assert variable_of("--order-timeout") == "SHOPKEEP_ORDER_TIMEOUT"
    assert variable_of("--stripe-api-key-file") == "SHOPKEEP_STRIPE_API_KEY_FILE"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("1m30s", 90), ("250ms", 0.25), ("2", 2),
     ("1.5", 1.5), ("0.5h", 1800), (" 10S ", 10)],
)  # fmt: skip
def test_a_duration_takes_units_and_a_bare_number_is_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "s", "abc", "5x", "1h-", "inf", "nan", "-1s", "1s 2s", "١٠s", "١٠",
     # float() reads these; a unit twice or out of order is a typing slip, not a sum
     "1_0", "1e3", "1h1h", "1s5m"],
)
def test_a_duration_without_a_number_or_unit_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_a_duration_flag_refuses_more_than_a_year_and_a_day_or_less_than_its_least() -> None:
    # an --order-timeout of 1e12 s placed orders whose deadlines no answer could write
    for text in ("1000000000000", "31622401", "8800h"):
        with pytest.raises(argparse.ArgumentTypeError, match="longer than a year and a day"):
            duration()(text)
    assert duration()("8784h") == 366 * 86_400
    with pytest.raises(argparse.ArgumentTypeError, match="shorter than 10ms"):
        duration(minimum=0.01)("0.000001")
    with pytest.raises(argparse.ArgumentTypeError, match="shorter than 1s"):
        duration(minimum=1.0)("0.5s")
    assert duration(minimum=0.01, allow_zero=True)("0") == 0


@pytest.mark.parametrize("text", ["١٠٨٠", "8_080", "+8080", "8080.0", "²"])
def test_a_whole_number_flag_takes_ascii_digits_only(text: str) -> None:
    # int() takes the first three (another script's digits, an underscore, a plus sign)
    with pytest.raises(argparse.ArgumentTypeError, match="is not a whole number"):
        whole(1, 65_535)(text)


def test_a_whole_number_flag_takes_a_sign_and_spaces_around() -> None:
    assert (whole()(" 8080 "), whole()("-3")) == (8080, -3)


def test_every_duration_flag_takes_units() -> None:
    serve = parse(
        "serve", "--sandbox", "--order-timeout", "5m", "--keepalive-timeout", "30s",
        "--read-timeout", "1m", "--refund-query-after", "2m",
    )  # fmt: skip
    bench = parse(
        "bench", "--embedded", "--duration", "2m", "--order-timeout", "3s", "--settle", "0",
        "--interval", "500ms",
    )  # fmt: skip

    assert (serve.order_timeout, serve.keepalive_timeout, serve.read_timeout) == (300, 30, 60)
    assert serve.refund_query_after == 120
    assert (bench.duration, bench.order_timeout, bench.settle, bench.interval) == (120, 3, 0, 0.5)


def test_a_variable_fills_a_flag_left_out_and_the_command_line_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHOPKEEP_ORDER_TIMEOUT", "1h")
    monkeypatch.setenv("SHOPKEEP_SHIPPING_FEE", "500")
    monkeypatch.setenv("SHOPKEEP_SANDBOX", "yes")
    monkeypatch.setenv("SHOPKEEP_LOG_FORMAT", "console")

    from_env = parse("serve")
    typed = parse("serve", "--order-timeout", "10s", "--shipping-fee", "0")

    assert (from_env.order_timeout, from_env.shipping_fee, from_env.sandbox) == (3600, 500, True)
    assert from_env.log_format == "console"
    assert (typed.order_timeout, typed.shipping_fee) == (10, 0)
    assert from_env.sources["order_timeout"] == "SHOPKEEP_ORDER_TIMEOUT"
    assert typed.sources["order_timeout"] == "--order-timeout"


def test_the_shops_settings_are_flags_with_the_configs_defaults() -> None:
    from shopkeep.actors.config import ShopConfig

    args = parse("serve", "--sandbox")
    given = parse(
        "serve", "--sandbox", "--shipping-fee", "250", "--free-shipping-threshold", "0",
        "--points-rate", "3", "--max-unpaid-orders", "2",
    )  # fmt: skip

    defaults = ShopConfig()
    assert (args.shipping_fee, args.free_shipping_threshold, args.points_rate) == (
        defaults.shipping_fee, defaults.free_shipping_threshold, defaults.points_per_unit,
    )  # fmt: skip
    assert args.max_unpaid_orders == defaults.max_unpaid_orders
    assert args.order_timeout == defaults.order_timeout_s
    assert (given.shipping_fee, given.free_shipping_threshold, given.points_rate) == (250, 0, 3)
    assert given.max_unpaid_orders == 2


def test_the_bench_flags_read_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "SHOPKEEP_EMBEDDED": "1", "SHOPKEEP_DURATION": "45s", "SHOPKEEP_CONCURRENCY": "3",
        "SHOPKEEP_MIX": "place=1", "SHOPKEEP_SEED": "7", "SHOPKEEP_JSON": "out.json",
        "SHOPKEEP_HTML": "out.html",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)

    args = parse("bench")

    assert args.embedded and args.url is None
    assert (args.duration, args.concurrency, args.seed) == (45, 3, 7)
    assert args.weights == {"place": 1}
    assert (args.json, args.html) == ("out.json", "out.html")


def test_thresholds_repeat_on_the_command_line_or_come_comma_separated_from_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHOPKEEP_WARMUP", "5s")
    monkeypatch.setenv("SHOPKEEP_RAMP", "1m")
    monkeypatch.setenv("SHOPKEEP_THRESHOLD", "place.p99<50ms, errors<0.1%")

    from_env = parse("bench", "--embedded")
    typed = parse("bench", "--embedded", "--threshold", "p99<1s", "--threshold", "per_s>10")
    none = build_parser().parse_args(["bench", "--embedded", "--threshold", "p99<1s"])
    monkeypatch.delenv("SHOPKEEP_THRESHOLD")
    default = parse("bench", "--embedded")

    assert (from_env.warmup, from_env.ramp) == (5, 60)
    assert [t.text for t in from_env.threshold] == ["place.p99<50ms", "errors<0.1%"]
    assert [t.text for t in typed.threshold] == ["p99<1s", "per_s>10"]  # the variable unread
    assert typed.sources["threshold"] == "--threshold" and len(none.threshold) == 1
    assert default.threshold == [] and default.compare is None


def test_a_url_typed_wins_over_embedded_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHOPKEEP_EMBEDDED", "1")

    args = parse("bench", "--url", "http://127.0.0.1:1", "--admin-token", "a" * 20)

    assert (args.url, args.embedded) == ("http://127.0.0.1:1", False)


@pytest.mark.parametrize(
    ("args", "variable", "value"),
    [
        (("serve",), "SHOPKEEP_PORT", "abc"),
        (("serve",), "SHOPKEEP_PORT", "70000"),
        (("serve",), "SHOPKEEP_ORDER_TIMEOUT", "soon"),
        (("serve",), "SHOPKEEP_ORDER_TIMEOUT", "0s"),
        (("serve",), "SHOPKEEP_SHIPPING_FEE", "-1"),
        (("serve",), "SHOPKEEP_MAX_UNPAID_ORDERS", "0"),
        (("serve",), "SHOPKEEP_ADMIN_TOKEN", "short"),
        (("serve",), "SHOPKEEP_LOG_LEVEL", "loud"),
        (("bench", "--embedded"), "SHOPKEEP_DURATION", "forever"),
        (("bench", "--embedded"), "SHOPKEEP_CONCURRENCY", "0"),
        (("bench", "--embedded"), "SHOPKEEP_MIX", "teleport=1"),
        (("bench", "--embedded"), "SHOPKEEP_RATE", "0"),
        (("bench", "--embedded"), "SHOPKEEP_THRESHOLD", "place.p99<5ms,errors<"),
        (("bench", "--embedded"), "SHOPKEEP_WARMUP", "-5s"),
        (("bench", "--embedded"), "SHOPKEEP_COMPARE", "/nonexistent/previous.json"),
        (("audit",), "SHOPKEEP_LOG_FORMAT", "xml"),
    ],
)
def test_a_bad_variable_is_named_in_a_one_line_error(
    args: tuple[str, ...], variable: str, value: str
) -> None:
    result = run_main(*args, env={variable: value})

    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert f"error: {variable}: " in line
    assert "argument --" not in line  # the operator typed no flag


@pytest.mark.parametrize("value", ["soon", "-5s"])
def test_a_bad_duration_flag_is_named_as_the_flag_with_its_variable(value: str) -> None:
    result = run_main("serve", "--order-timeout", value, env={})

    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert (
        f"argument --order-timeout (env SHOPKEEP_ORDER_TIMEOUT): '{value}' is not a duration"
        in line
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("serve", "--port", "abc", "--sandbox"), "--port (env SHOPKEEP_PORT)"),
        (("serve", "--gateway", "paypal"), "--gateway (env SHOPKEEP_GATEWAY)"),
        (("serve", "--gateway", "alipay"), "--alipay-app-id (env SHOPKEEP_ALIPAY_APP_ID)"),
        (("bench", "--concurrency", "0"), "--concurrency (env SHOPKEEP_CONCURRENCY)"),
        # values refused after parsing: a database path, the file to back up to
        (("serve", "--sandbox", "--db", "/nonexistent-dir/x.db"), "--db (env SHOPKEEP_DB)"),
        (("demo", "--db", "/nonexistent-dir/x.db"), "--db (env SHOPKEEP_DB)"),
        (("audit", "--db", "/nonexistent-dir/x.db"), "--db (env SHOPKEEP_DB)"),
        (("backup", "--db", "/nonexistent-dir/x.db", "--to", "x"), "--db (env SHOPKEEP_DB)"),
    ],
)
def test_every_one_line_error_about_a_flag_names_its_variable(
    args: tuple[str, ...], named: str
) -> None:
    # SPEC 8: each flag's variable is "named in --help and in one-line errors about it"
    result = run_main(*args, env={})

    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert named in line


def test_a_path_with_dashes_in_a_message_is_not_taken_for_a_flag() -> None:
    said = "cannot use database path /tmp/a--b/--c.db: no such directory"
    assert with_variables(said) == said


def test_a_variable_already_named_is_not_named_twice() -> None:
    said = with_variables("a gateway is required: --gateway NAME (env SHOPKEEP_GATEWAY), or --help")
    assert said == "a gateway is required: --gateway NAME (env SHOPKEEP_GATEWAY), or --help"


def test_a_variable_for_another_command_is_not_read() -> None:
    # a bad serve setting in the environment does not stop an audit
    result = run_main("audit", "--db", "/nonexistent/x.db", env={"SHOPKEEP_PORT": "abc"})

    (line,) = result.stderr.splitlines()
    assert "SHOPKEEP_PORT" not in line and "/nonexistent/x.db" in line


def test_the_bench_never_fills_an_existing_database_named_by_the_servers_variable(
    tmp_path: Path,
) -> None:
    shop = tmp_path / "shop.db"
    shop.write_bytes(b"")

    result = run_main("bench", "--embedded", env={"SHOPKEEP_DB": str(shop)})

    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert f"SHOPKEEP_DB: {shop} exists" in line


@pytest.mark.parametrize("typed", [("--db", "bench.db"), ("--order-timeout", "3s")])
def test_a_flag_of_the_embedded_shop_beside_url_is_refused(
    typed: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # they were ignored without a word: the server has its own database and deadline
    with pytest.raises(SystemExit) as exited:
        parse("bench", "--url", "http://127.0.0.1:1", "--admin-token", "a" * 20, *typed)

    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"argument {typed[0]} " in line and "only with --embedded" in line
    assert "a server has its own" in line


def test_the_embedded_shops_variables_exported_for_serve_leave_a_url_run_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHOPKEEP_DB", "shop.db")
    monkeypatch.setenv("SHOPKEEP_ORDER_TIMEOUT", "5s")

    args = parse("bench", "--url", "http://127.0.0.1:1", "--admin-token", "a" * 20)

    assert args.url == "http://127.0.0.1:1"


async def test_the_shops_settings_reach_the_running_shop(tmp_path: Path) -> None:
    from shopkeep.actors.config import ShopConfig
    from shopkeep.cli.serve import serve_options
    from shopkeep.http.server import running

    args = parse(
        "serve", "--sandbox", "--db", str(tmp_path / "shop.db"), "--port", "0",
        "--order-timeout", "2m",
        "--max-unpaid-orders", "4", "--shipping-fee", "250", "--free-shipping-threshold",
        "5000", "--points-rate", "3",
    )  # fmt: skip

    async with running(serve_options(args), announce=lambda token: None) as server:
        config = server.shop.config

    expected = ShopConfig(
        order_timeout_s=120, max_unpaid_orders=4, shipping_fee=250,
        free_shipping_threshold=5000, points_per_unit=3,
    )  # fmt: skip
    assert config == expected


async def test_the_log_flags_choose_the_level_and_the_format(tmp_path: Path) -> None:
    import asyncio
    import signal

    process = await asyncio.create_subprocess_exec(
        sys.executable, "main.py", "serve", "--db", str(tmp_path / "shop.db"), "--port", "0",
        "--sandbox", "--log-level", "critical", cwd=ROOT, stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL, env={**os.environ, "SHOPKEEP_LOG_FORMAT": "console"},
    )  # fmt: skip
    assert process.stderr is not None
    try:
        first = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
    finally:
        process.send_signal(signal.SIGTERM)
        rest = (await asyncio.wait_for(process.communicate(), 30))[1].decode()

    # the sandbox said loudly, at every level (SPEC 8)
    assert "sandbox_enabled" in first and not first.startswith("{")  # console, not JSON
    assert "[critical" in first
    assert "serving" not in rest and "stopped" not in rest  # info lines are below the level
    assert process.returncode == 0


def test_a_flag_beats_the_variable_of_the_flag_it_excludes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # SPEC 8: each flag is also read from its variable; given on the command line, it wins
    token_file = tmp_path / "token"
    token_file.write_text("from-the-file-0123456789\n")
    monkeypatch.setenv("SHOPKEEP_ADMIN_TOKEN", "from-the-variable-0123456789")
    by_file = parse("serve", "--sandbox", "--admin-token-file", str(token_file))
    assert by_file.admin_token == "from-the-file-0123456789"
    monkeypatch.delenv("SHOPKEEP_ADMIN_TOKEN")
    monkeypatch.setenv("SHOPKEEP_ADMIN_TOKEN_FILE", str(token_file))
    by_flag = parse("serve", "--sandbox", "--admin-token", "from-the-flag-0123456789")
    assert by_flag.admin_token == "from-the-flag-0123456789"
    monkeypatch.setenv("SHOPKEEP_GATEWAY", "stripe")
    assert parse("serve", "--sandbox").gateway == "sandbox"
    monkeypatch.delenv("SHOPKEEP_GATEWAY")
    monkeypatch.setenv("SHOPKEEP_SANDBOX", "1")
    chosen = parse("serve", "--gateway", "stripe")
    assert (chosen.gateway, chosen.sandbox) == ("stripe", False)


def test_two_variables_that_exclude_each_other_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SHOPKEEP_GATEWAY", "stripe")
    monkeypatch.setenv("SHOPKEEP_SANDBOX", "1")
    with pytest.raises(SystemExit):
        parse("serve")
    assert "SHOPKEEP_SANDBOX: not allowed with SHOPKEEP_GATEWAY stripe" in capsys.readouterr().err
