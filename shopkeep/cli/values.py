"""The converters of flag values: text in, a checked value out, or a refusal in a few words.

Each raises ``argparse.ArgumentTypeError`` with a message that reads after the flag's or the
variable's name (``--port: 'abc' is not a whole number``), so the one-line errors of the
command line and of the environment say the same thing.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import urllib.parse
from collections.abc import Callable
from typing import Final

from shopkeep.actors.config import MAX_DURATION_S

UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
"""The units a duration takes; a bare number is seconds."""
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
"""A plain decimal number (ASCII digits: ``\\d`` also takes other scripts' digits, ``١٠``)."""
_PART = re.compile(f"({_NUMBER.pattern})(ms|s|m|h)")
DURATION_HINT: Final = "a duration such as 30s, 5m, 1h or 1m30s (a bare number is seconds)"
DURATIONS_HELP: Final = "durations take units (30s, 5m, 1h, 1m30s; a bare number is seconds)"
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS: Final = ("json", "console")


def refuse(message: str) -> argparse.ArgumentTypeError:
    """The refusal converters raise."""
    return argparse.ArgumentTypeError(message)


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``30s``, ``5m``, ``1h``, ``250ms``, ``1m30s``, or a bare number;
    the units from the longest down, each once (``1s5m``, ``1h1h`` are not durations), the
    numbers in plain decimals (``float()`` also reads ``1_0``, ``1e3`` and ``inf``)."""
    cleaned = text.strip().lower()
    if _NUMBER.fullmatch(cleaned):
        return float(cleaned)
    position, seconds, longest = 0, 0.0, math.inf
    for match in _PART.finditer(cleaned):
        unit = UNITS[match.group(2)]
        if match.start() != position or unit >= longest:
            break
        seconds += float(match.group(1)) * unit
        position, longest = match.end(), unit
    if position != len(cleaned) or not cleaned:
        raise refuse(f"{text!r} is not {DURATION_HINT}")
    return seconds


def duration(*, allow_zero: bool = False, minimum: float = 0.0) -> Callable[[str], float]:
    """A converter of positive durations (or of durations >= 0 when ``allow_zero``), at least
    ``minimum`` seconds and at most :data:`MAX_DURATION_S`."""

    def convert(text: str) -> float:
        seconds = parse_duration(text)
        if seconds < 0 or (seconds == 0 and not allow_zero):
            raise refuse(f"{text!r} is not a {'' if allow_zero else 'positive '}duration")
        if seconds > MAX_DURATION_S:
            raise refuse(f"{text!r} is longer than a year and a day")
        if seconds and seconds < minimum:
            shortest = f"{minimum:g}s" if minimum >= 1 else f"{minimum * 1000:g}ms"
            raise refuse(f"{text!r} is shorter than {shortest}")
        return seconds

    convert.__name__ = "duration"
    return convert


def whole(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """A converter of whole numbers within [minimum, maximum]."""

    def convert(text: str) -> int:
        cleaned = text.strip()
        digits = cleaned.removeprefix("-")
        # ASCII digits only: int() also takes "8_080" and other scripts' digits ("١٠")
        if not (digits.isascii() and digits.isdigit()):
            raise refuse(f"{text!r} is not a whole number")
        number = int(cleaned)
        if minimum is not None and number < minimum:
            raise refuse(f"{number} is less than {minimum}")
        if maximum is not None and number > maximum:
            raise refuse(f"{number} is more than {maximum}")
        return number

    convert.__name__ = "whole"
    return convert


def port(text: str) -> int:
    """A TCP port, 0 for any free one."""
    number = whole()(text)
    if not 0 <= number <= 65535:
        raise refuse(f"{number} is not a TCP port (0-65535)")
    return number


def host(text: str) -> str:
    """An address to listen on: aiohttp takes an empty one as every interface, which a typo or
    an unset shell variable should not open the server to; every interface is asked for by
    name (``0.0.0.0``, ``::``)."""
    if not text.strip():
        raise refuse("an empty address (every interface is 0.0.0.0 or ::, asked by name)")
    return text


def number(
    *, minimum: float = 0.0, inclusive: bool = True, maximum: float = math.inf
) -> Callable[[str], float]:
    """A converter of finite numbers above ``minimum`` (or at it, when ``inclusive``), and at
    most ``maximum``."""

    def convert(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise refuse(f"{text!r} is not a number") from None
        low = value >= minimum if inclusive else value > minimum
        if not (math.isfinite(value) and low):
            bound = f"{'at least' if inclusive else 'above'} {minimum:g}"
            raise refuse(f"{text!r} is not a number {bound}")
        if value > maximum:
            raise refuse(f"{text!r} is more than {maximum:g}")
        return value

    convert.__name__ = "number"
    return convert


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    value = number()(text)
    if value > 1:
        raise refuse(f"{value:g} is not in [0, 1]")
    return value


def choice(*names: str, fold: Callable[[str], str] = str.lower) -> Callable[[str], str]:
    """A converter that takes one of ``names`` (compared after ``fold``)."""

    def convert(text: str) -> str:
        value = fold(text.strip())
        if value not in names:
            raise refuse(f"invalid choice {text!r} (choose from {', '.join(names)})")
        return value

    convert.__name__ = "choice"
    return convert


def http_url(text: str) -> str:
    """An http(s) URL naming a host, and a TCP port if it names one."""
    if not text.startswith(("http://", "https://")):
        raise refuse(f"{text!r} is not an http(s) URL")
    if any(character.isspace() or not character.isprintable() for character in text):
        raise refuse(f"{text!r}: a URL holds no space or control character")
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018  (read for its check: digits, 0 to 65535)
    except ValueError:
        raise refuse(f"{text!r}: its port is not a TCP port (0-65535)") from None
    if not parts.hostname:
        raise refuse(f"{text!r} names no host")
    return text


def base_url(text: str) -> str:
    """An http(s) URL that routes are added to (``--public-url``, a provider's address): a
    query or a fragment would end up before each route's path."""
    url = http_url(text)
    parts = urllib.parse.urlsplit(url)
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise refuse(f"{text!r}: a base URL takes no query or fragment (routes follow it)")
    return url


def database_file_problem(path: str) -> str | None:
    """Why there is no database file at ``path`` to read (a folder there, nothing, a name the
    system cannot look up, a device, a file of several names), or None when there is one."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return "no such database file"
    except (OSError, ValueError) as error:  # too long a name, a NUL in it
        return getattr(error, "strerror", None) or str(error)
    if os.path.isdir(path):
        return "it is a folder, not a database file"
    if not os.path.isfile(path):
        return "not a regular file"
    links = os.stat(path).st_nlink
    if links > 1:
        # read by another name than a server's, SQLite would read it without the server's
        # -wal, the commits not yet copied into the file missing
        return f"it has {links} names (hard links), of which a server may use another: remove them"
    return None


def metavar_of(*names: str) -> str:
    """``{a,b}``, as argparse shows choices."""
    return "{" + ",".join(names) + "}"
