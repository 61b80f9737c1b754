"""``shopkeep serve`` serves the console at /admin unless told ``--no-admin-ui``."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from shopkeep.cli import build_parser
from shopkeep.cli.serve import serve_options
from shopkeep.http.server import ServeOptions, running


def test_no_admin_ui_is_a_flag_with_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = build_parser()
    assert serve_options(parser.parse_args(["serve", "--sandbox"])).admin_ui is True
    assert serve_options(parser.parse_args(["serve", "--no-admin-ui"])).admin_ui is False
    monkeypatch.setenv("SHOPKEEP_NO_ADMIN_UI", "1")
    assert serve_options(build_parser().parse_args(["serve"])).admin_ui is False


@pytest.mark.parametrize("admin_ui", [True, False])
async def test_the_server_serves_the_console_unless_told_not_to(
    tmp_path: Path, admin_ui: bool
) -> None:
    options = ServeOptions(
        db=str(tmp_path / "shop.db"), port=0, sandbox=True, writer="thread",
        admin_token="serve-test-admin-token-0123456789", admin_ui=admin_ui,
    )  # fmt: skip
    async with running(options) as server, aiohttp.ClientSession() as http:
        for path in ("/admin", "/admin/sign-in", "/admin/static/htmx.min.js"):
            async with http.get(server.url + path, allow_redirects=False) as response:
                expected = {"/admin": 303}.get(path, 200) if admin_ui else 404
                assert response.status == expected, path
        async with http.get(server.url + "/admin/static/admin.css") as response:
            assert response.status == (200 if admin_ui else 404)
