"""One place that declares a flag and its environment variable (SPEC 8).

:func:`flag` adds ``--some-flag`` to a parser together with ``SHOPKEEP_SOME_FLAG``: the help
names the variable and the default, and one converter checks the value whichever way it came.
argparse knows nothing of the variable: the flag's argparse default is :data:`UNSET`, and once
the command line is parsed, :meth:`OneLineParser.parse_known_args` fills each flag left unset
from its variable (through the same converter) or from its default. So a bad variable is
reported under its own name (``SHOPKEEP_PORT: 'abc' is not a whole number``), not as the flag
the operator never typed, and a variable for one command is never read by another.

Every usage error is one line and exit status 2 (:data:`EXIT_USAGE`); the usage itself is in
``--help``. ``args.sources`` records where each value came from, so the checks that span flags
can name it too (:func:`given_as`). A flag an error names is followed by its variable
(:func:`with_variables`: ``argument --port (env SHOPKEEP_PORT): 'abc' is not a whole
number``), wherever the error was raised.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn

PROG: Final = "shopkeep"
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
"""128 + SIGINT, as a shell reports a process Ctrl-C ended: a command stopped before it could
stop gracefully (while it starts, or by a second Ctrl-C)."""
PREFIX: Final = "SHOPKEEP_"

Converter = Callable[[str], Any]
"""Turns the text of a flag or variable into its value; refuses it with
``argparse.ArgumentTypeError`` whose message says why in a few words."""


class Unset:
    """The argparse default of every declared flag: "not on the command line"."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset()

TRUE_WORDS: Final = ("1", "true", "yes", "on")
FALSE_WORDS: Final = ("0", "false", "no", "off")
SWITCH_VARIABLE: Final = "the variable takes 1 or 0, or true/false, yes/no, on/off"
"""What a switch's help says of its variable (:func:`switch`)."""


def switch(text: str) -> bool:
    """The value of an on/off variable (``SHOPKEEP_SANDBOX=1``)."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(
        f"{text!r} is neither 1 nor 0 (nor {'/'.join(TRUE_WORDS[1:])}, {'/'.join(FALSE_WORDS[1:])})"
    )


@dataclass(frozen=True)
class Flag:
    """A declared flag: where its value may come from and how it is checked."""

    option: str
    """``--some-flag``."""
    dest: str
    variable: str
    """``SHOPKEEP_SOME_FLAG``."""
    convert: Converter
    default: Any
    repeatable: bool = False
    """Given any number of times (a list); its variable holds the values comma-separated."""


def variable_of(option: str) -> str:
    """The environment variable of ``option``: ``--order-timeout`` -> SHOPKEEP_ORDER_TIMEOUT."""
    return PREFIX + option.lstrip("-").upper().replace("-", "_")


OPTION_NAMED: Final = re.compile(r"(?<![^\s(`'\"])--[a-z][a-z0-9-]*")
"""A flag named in a message: ``--`` after a space, a bracket or a quote (not in a path)."""
NO_VARIABLE: Final = frozenset({"--help", "--version"})


def with_variables(message: str, known: Collection[str] | None = None) -> str:
    """``message`` with each flag it names followed by its variable, unless the message names
    that variable already (SPEC 8: one-line errors about a flag name its variable); given
    ``known``, only the flags in it (an unknown flag has no variable)."""

    def named(found: re.Match[str]) -> str:
        option = found.group()
        variable = variable_of(option)
        if option in NO_VARIABLE or variable in message or (known and option not in known):
            return option
        return f"{option} (env {variable})"

    return OPTION_NAMED.sub(named, message)


UNRECOGNIZED: Final = "unrecognized arguments: "


def without_values(message: str) -> str:
    """argparse's refusal of unknown arguments naming only the flags among them: the words
    after an unknown flag are its value, which may be a secret typed to the wrong flag."""
    if not message.startswith(UNRECOGNIZED):
        return message
    words = message.removeprefix(UNRECOGNIZED).split()
    flags = [word.partition("=")[0] for word in words if word.startswith("-")]
    if not flags:
        return message
    left = len(words) - len(flags)
    values = f" (and {left} value{'s' * (left > 1)})" if left else ""
    return UNRECOGNIZED + " ".join(flags) + values


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, and whose declared flags fall back
    to their environment variables. A flag is only ever its whole name: argparse would take
    ``--stripe-api-key sk_...`` for ``--stripe-api-key-file`` and print the secret back as a
    missing file."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.flags: list[Flag] = []
        # A value that starts with a minus and a digit is a value, not a flag (no flag is
        # spelt so): argparse takes only ``-5`` and ``-0.5`` so, and answered ``--order-timeout
        # -5s`` with "expected one argument" instead of saying what is wrong with -5s.
        self._negative_number_matcher = re.compile(r"^-\d")

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message>`` and exit with status 2."""
        said = with_variables(without_values(message), self.known_options())
        self.exit(EXIT_USAGE, f"{self.prog}: error: {said} (see --help)\n")

    def known_options(self) -> set[str]:
        """Every flag this parser and its commands' parsers take."""
        known = set(self._option_string_actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for command in action.choices.values():
                    known.update(command._option_string_actions)
        return known

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """Parse; arguments no parser takes are refused by the command's parser, whose name
        the line then begins with (argparse's own refusal names the program alone)."""
        words = list(sys.argv[1:] if args is None else args)
        parsed, rest = self.parse_known_args(words, namespace)
        if rest:
            self.command_parser(parsed, words, rest).error(UNRECOGNIZED + " ".join(rest))
        return parsed

    def command_parser(
        self, parsed: argparse.Namespace, words: list[str], rest: list[str]
    ) -> argparse.ArgumentParser:
        """The parser of the command ``parsed`` names, when every argument of ``rest`` came
        after it in ``words``; else this one (``shopkeep --bogus serve``)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                name = str(getattr(parsed, action.dest, ""))
                command: argparse.ArgumentParser | None = action.choices.get(name)
                if command is not None and name in words:
                    before = words[: words.index(name)]
                    if not any(word in before for word in rest):
                        return command
        return self

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse, then settle every flag left unset from its variable or its default."""
        parsed, rest = super().parse_known_args(args, namespace)
        self.settle(parsed)
        return parsed, rest

    def settle(self, args: argparse.Namespace) -> None:
        """Fill each unset flag of this parser from its variable, else its default."""
        sources: dict[str, str] = dict(getattr(args, "sources", {}))
        for spec in self.flags:
            given = getattr(args, spec.dest, UNSET)
            if given is not UNSET and not (spec.repeatable and given is None):
                sources[spec.dest] = spec.option
                continue
            raw = os.environ.get(spec.variable, "")
            if raw == "":
                default = list(spec.default) if spec.repeatable else spec.default
                setattr(args, spec.dest, default)
                sources[spec.dest] = "default"
                continue
            try:
                if spec.repeatable:
                    value = [spec.convert(part.strip()) for part in raw.split(",") if part.strip()]
                else:
                    value = spec.convert(raw)
            except (argparse.ArgumentTypeError, ValueError) as error:
                self.error(f"{spec.variable}: {error}")
            setattr(args, spec.dest, value)
            sources[spec.dest] = spec.variable
        args.sources = sources


def flag(
    parser: argparse.ArgumentParser,
    option: str,
    *,
    help: str,
    convert: Converter = str,
    default: str | None = None,
    metavar: str | None = None,
    is_switch: bool = False,
    shown_default: str | None = None,
    group: Any = None,
    repeatable: bool = False,
) -> None:
    """Declare ``option`` on ``parser`` (in ``group``, a mutually exclusive group, if given)
    with its variable; ``default`` is text as the operator would type it (converted once here),
    ``shown_default`` what ``--help`` says when that is not the text itself. A ``repeatable``
    flag may be given many times (its value is the list, empty by default); its variable holds
    the values comma-separated."""
    if not isinstance(parser, OneLineParser):
        raise TypeError("flags are declared on a OneLineParser")
    variable = variable_of(option)
    if is_switch:
        convert = switch
    value = None if default is None else convert(default)
    said = shown_default or default
    where = f"env {variable}" + (", comma-separated" if repeatable else "")
    where += f"; default: {said}" if said is not None else ""
    text = f"{help} ({where})".replace("%", "%%")
    container = parser if group is None else group
    if is_switch:
        action = container.add_argument(option, action="store_true", default=UNSET, help=text)
        value = bool(value)
    elif repeatable:
        # argparse's append copies its default, so "not given" is None here rather than UNSET
        action = container.add_argument(
            option, type=convert, action="append", default=None, metavar=metavar, help=text
        )
        value = []
    else:
        action = container.add_argument(
            option, type=convert, default=UNSET, metavar=metavar, help=text
        )
    parser.flags.append(Flag(option, action.dest, variable, convert, value, repeatable))


def given_as(args: argparse.Namespace, dest: str) -> str:
    """How the operator gave the value of ``dest``: ``--flag``, or ``SHOPKEEP_FLAG``."""
    sources: dict[str, str] = getattr(args, "sources", {})
    source = sources.get(dest, "default")
    if source == "default":
        return "--" + dest.replace("_", "-")
    return source


def on_command_line(args: argparse.Namespace, dest: str) -> bool:
    """Whether ``dest`` was given as a flag (not by its variable, nor left to its default)."""
    sources: dict[str, str] = getattr(args, "sources", {})
    return sources.get(dest, "default").startswith("--")


def flag_over_variable(args: argparse.Namespace, one: str, other: str) -> str | None:
    """Of two flags that exclude each other, both set, the one given on the command line when
    the other came from its variable (a flag beats a variable); None when both were given the
    same way, and which one was meant is unknown."""
    if on_command_line(args, one) and not on_command_line(args, other):
        return one
    if on_command_line(args, other) and not on_command_line(args, one):
        return other
    return None


def argument_named(args: argparse.Namespace, dest: str) -> str:
    """Where the value of ``dest`` came from, as an error names it: ``argument --flag`` (the
    flag, or its default) or ``SHOPKEEP_FLAG``."""
    source = given_as(args, dest)
    return source if source.startswith(PREFIX) else f"argument {source}"


def usage_error(
    parser: argparse.ArgumentParser, args: argparse.Namespace, dest: str, message: str
) -> NoReturn:
    """Refuse the value of ``dest`` in one line that names where it came from."""
    parser.error(f"{argument_named(args, dest)}: {message}")


def fail(args: argparse.Namespace, message: str) -> int:
    """Say ``shopkeep COMMAND: error: <message>`` on stderr, as the command's parser says a
    usage error; the usage exit status, to return."""
    print(f"{PROG} {args.command}: error: {with_variables(message)}", file=sys.stderr)
    return EXIT_USAGE


def fail_about(args: argparse.Namespace, dest: str, message: str) -> int:
    """:func:`fail` for a value of ``dest`` found unusable after parsing (a database path, a
    port taken), naming where it came from as a usage error does."""
    return fail(args, f"{argument_named(args, dest)}: {message}")
