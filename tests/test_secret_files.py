"""Secret and key files named on the command line: read bounded, and a file others may read
said, once, as a database others may read is."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from shopkeep.secret_files import read_secret_file


def test_a_secret_file_others_may_read_is_read_and_said_once(tmp_path: Path) -> None:
    token = tmp_path / "admin.token"
    token.write_text("a-token-of-sixteen-or-more")
    token.chmod(0o644)

    with capture_logs() as logs:
        first = read_secret_file(token)
        read_secret_file(token)

    assert first == b"a-token-of-sixteen-or-more"
    [said] = [e for e in logs if e["event"] == "secret_file_not_private"]
    assert (said["path"], said["mode"], said["log_level"]) == (str(token), "0644", "warning")


def test_a_secret_file_its_owners_alone_is_read_without_a_word(tmp_path: Path) -> None:
    token = tmp_path / "admin.token"
    token.write_text("a-token-of-sixteen-or-more")
    token.chmod(0o600)

    with capture_logs() as logs:
        read_secret_file(token)

    assert logs == []
