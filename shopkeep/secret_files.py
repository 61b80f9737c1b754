"""Reading a secret or key file named on the command line, bounded.

A token, a webhook secret or a PEM key is a few kilobytes at most; a path given by mistake
(``/dev/zero``, a disk image) must end in a one-line refusal, not in reading until memory
runs out.
"""

from __future__ import annotations

import codecs
import os
import stat
from pathlib import Path
from typing import Final

import structlog

MAX_SECRET_FILE: Final = 64 * 1024
"""The most bytes a secret or key file holds (a 4,096-bit PEM key and its chain are under 8
KiB)."""


class TooLarge(ValueError):
    """The file holds more than :data:`MAX_SECRET_FILE` bytes."""


def read_secret_file(path: str | Path) -> bytes:
    """The bytes of the file at ``path``, without a UTF-8 byte-order mark; OSError when it
    cannot be read, :class:`TooLarge` when it holds more than :data:`MAX_SECRET_FILE` (read no
    further)."""
    # opened without waiting: a FIFO with no writer would hold the open (and the start, deaf
    # to signals) for ever; then read as any file (a pipe with a writer, <(...) in a shell, is
    # read to its end, one without is read as empty)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as file:
        _say_if_not_private(path, os.fstat(fd))
        data = file.read(MAX_SECRET_FILE + 1)
    if len(data) > MAX_SECRET_FILE:
        raise TooLarge(f"larger than {MAX_SECRET_FILE // 1024} KiB: not a secret or key file")
    # a byte-order mark, as Windows' editors begin a text file, is no part of the secret
    return data.removeprefix(codecs.BOM_UTF8)


def _say_if_not_private(path: str | Path, found: os.stat_result) -> None:
    """Warn, once a process, of a secret file others may read (a token, a provider's key), as
    of a database others may read: its owner's choice to make, and to know of (ssh refuses
    such a key; a shop that would not start for it could not be started again by a script
    that wrote it so). A pipe (``<(...)``) has no such mode."""
    mode = stat.S_IMODE(found.st_mode)
    named = str(path)
    if not stat.S_ISREG(found.st_mode) or not mode & 0o077 or named in _SAID_NOT_PRIVATE:
        return
    _SAID_NOT_PRIVATE.add(named)
    # a logger got as it is said, not kept: configured logs keep the first logger a name
    # uses, and each command's logging is set up afresh (many times in one test process)
    structlog.get_logger("shopkeep.secrets").warning(
        "secret_file_not_private", path=named, mode=f"{mode:04o}",
        detail="other users may read this token or key: chmod 600 it unless that is meant",
    )  # fmt: skip


_SAID_NOT_PRIVATE: set[str] = set()
"""The secret files this process has warned of already."""
