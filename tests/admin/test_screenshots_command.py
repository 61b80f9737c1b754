"""The screenshots command reads its folder through an argument parser: a flag is never a folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shopkeep.admin import screenshots


def test_help_explains_the_command_and_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as ended:
        screenshots.main(["--help"])
    assert ended.value.code == 0
    assert "DOCS_DIR" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_flag_is_a_usage_error_and_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as ended:
        screenshots.main(["--into", "somewhere"])
    assert ended.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_folder_defaults_to_docs() -> None:
    assert screenshots.parser().parse_args([]).docs == "docs"


def test_a_folder_that_cannot_be_made_is_a_one_line_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(screenshots, "CHROMIUM", Path(sys.executable))  # one is there
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SystemExit) as ended:
        screenshots.main([str(tmp_path / "a-file")])
    assert ended.value.code == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert "DOCS_DIR" in said[-1] and "Traceback" not in "".join(said)
