"""An Idempotency-Key is checked by ``IdempotencyKey`` with str's own tests, and published to
clients as ``KEY_PATTERN``: the two must accept exactly the same keys."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shopkeep.errors import ShopError
from shopkeep.idempotency import IdempotencyKey
from shopkeep.requests import KEY_PATTERN, MAX_KEY

PATTERN = re.compile(KEY_PATTERN)


def accepted(key: str) -> bool:
    try:
        IdempotencyKey(key)
    except ShopError:
        return False
    return True


# every ASCII character and a few beyond, so spaces, DEL, controls and non-ASCII all appear
keys = st.text(st.characters(max_codepoint=0x110), max_size=MAX_KEY + 2)


@given(keys)
def test_the_check_accepts_exactly_what_the_published_pattern_matches(key: str) -> None:
    assert accepted(key) == (PATTERN.fullmatch(key) is not None)


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("a", True),
        ("a b", True),
        ("~" * MAX_KEY, True),
        ("~" * (MAX_KEY + 1), False),
        ("", False),
        (" a", False),
        ("a ", False),
        (" ", False),
        ("a\x7f", False),
        ("a\tb", False),
        ("café", False),
        ("a\n", False),
    ],
)
def test_a_key_is_one_to_255_printable_ascii_characters_not_starting_or_ending_in_a_space(
    key: str, ok: bool
) -> None:
    assert accepted(key) is ok
    assert (PATTERN.fullmatch(key) is not None) is ok
