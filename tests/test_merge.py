"""The last-writer-wins rule of spread_core.merge, as pure functions: no database, no settings."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spread_core.merge import EventKey, Outcome, decide, event_id, winner

DATE = 1_764_130_000_000_000  # a fixed date, in microseconds

# Origins whose UTF-8 byte order is NOT their UTF-16 code unit order (what JavaScript or Java
# string comparison would give): U+FFFD is one unit 0xFFFD, U+1F600 is the surrogates 0xD83D 0xDE00.
BMP_ORIGIN = "\ufffd"
ASTRAL_ORIGIN = "\U0001f600"


def utf16_units(text: str) -> list[int]:
    data = text.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


# --- event_id ---------------------------------------------------------------------------------


def test_event_id_is_32_hex_digits_and_deterministic() -> None:
    first = event_id("a/b", DATE, "alice")
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert event_id("a/b", DATE, "alice") == first


def test_event_id_differs_when_path_date_or_origin_differs() -> None:
    ids = {
        event_id("a/b", DATE, "alice"),
        event_id("a/c", DATE, "alice"),
        event_id("a/b", DATE + 1, "alice"),
        event_id("a/b", DATE, "bob"),
        # The separators keep concatenations apart: ("a", 12, "3") is not ("a", 1, "23").
        event_id("a", 12, "3"),
        event_id("a", 1, "23"),
    }
    assert len(ids) == 6


def test_event_id_of_non_ascii_origin_is_stable_across_calls() -> None:
    assert event_id("x", DATE, "éric") == event_id("x", DATE, "éric")
    assert event_id("x", DATE, "éric") != event_id("x", DATE, "eric")


# --- decide -----------------------------------------------------------------------------------


def test_decide_first_event_of_a_topic_is_ok() -> None:
    assert decide(None, EventKey(DATE, "alice")) is Outcome.OK


def test_decide_later_date_wins() -> None:
    assert decide(EventKey(DATE, "alice"), EventKey(DATE + 1, "alice")) is Outcome.OK


def test_decide_earlier_date_is_too_late() -> None:
    assert decide(EventKey(DATE, "alice"), EventKey(DATE - 1, "alice")) is Outcome.TOO_LATE


def test_decide_same_date_and_origin_is_existing() -> None:
    assert decide(EventKey(DATE, "alice"), EventKey(DATE, "alice")) is Outcome.EXISTING


def test_decide_date_is_compared_before_origin() -> None:
    # "zed" > "alice" as origin, but the date decides first.
    assert decide(EventKey(DATE, "zed"), EventKey(DATE + 1, "alice")) is Outcome.OK
    assert decide(EventKey(DATE + 1, "alice"), EventKey(DATE, "zed")) is Outcome.TOO_LATE


def test_decide_equal_dates_are_broken_by_origin() -> None:
    assert decide(EventKey(DATE, "alice"), EventKey(DATE, "bob")) is Outcome.OK
    assert decide(EventKey(DATE, "bob"), EventKey(DATE, "alice")) is Outcome.TOO_LATE


def test_decide_origin_is_compared_as_bytes_not_case_folded() -> None:
    # b"B" (0x42) < b"a" (0x61): no collation, no case folding.
    assert decide(EventKey(DATE, "B"), EventKey(DATE, "a")) is Outcome.OK
    assert decide(EventKey(DATE, "a"), EventKey(DATE, "B")) is Outcome.TOO_LATE


def test_decide_non_ascii_origin_sorts_after_ascii() -> None:
    # "é" is b"\xc3\xa9", greater than any ASCII byte such as "z".
    assert decide(EventKey(DATE, "z"), EventKey(DATE, "é")) is Outcome.OK
    assert decide(EventKey(DATE, "é"), EventKey(DATE, "z")) is Outcome.TOO_LATE


def test_decide_astral_origin_beats_bmp_origin_by_utf8_bytes_unlike_utf16() -> None:
    # The premise: UTF-16 order (JavaScript) would rank them the other way round.
    assert utf16_units(ASTRAL_ORIGIN) < utf16_units(BMP_ORIGIN)
    assert ASTRAL_ORIGIN.encode() > BMP_ORIGIN.encode()
    assert decide(EventKey(DATE, BMP_ORIGIN), EventKey(DATE, ASTRAL_ORIGIN)) is Outcome.OK
    assert decide(EventKey(DATE, ASTRAL_ORIGIN), EventKey(DATE, BMP_ORIGIN)) is Outcome.TOO_LATE


def test_decide_a_prefix_origin_loses_to_its_extension() -> None:
    assert decide(EventKey(DATE, "node"), EventKey(DATE, "node-2")) is Outcome.OK
    assert decide(EventKey(DATE, "node-2"), EventKey(DATE, "node")) is Outcome.TOO_LATE


# --- winner -----------------------------------------------------------------------------------


def test_winner_of_nothing_is_none() -> None:
    assert winner([]) is None


def test_winner_is_greatest_date_then_greatest_origin_bytes() -> None:
    keys = [
        EventKey(DATE, "zed"),
        EventKey(DATE + 5, BMP_ORIGIN),
        EventKey(DATE + 5, ASTRAL_ORIGIN),
        EventKey(DATE + 5, "alice"),
        EventKey(DATE + 4, "\U0010ffff"),
    ]
    assert winner(keys) == EventKey(DATE + 5, ASTRAL_ORIGIN)
    assert winner(reversed(keys)) == EventKey(DATE + 5, ASTRAL_ORIGIN)


def test_winner_accepts_a_generator() -> None:
    assert winner(EventKey(DATE + i, "a") for i in range(3)) == EventKey(DATE + 2, "a")


# --- properties -------------------------------------------------------------------------------

PATHS = ["a", "a/b", "b"]
ORIGINS = ["a", "B", "b", "é", BMP_ORIGIN, ASTRAL_ORIGIN]
DATES = [0, 1, 2, DATE]

events_strategy = st.lists(
    st.tuples(st.sampled_from(PATHS), st.sampled_from(DATES), st.sampled_from(ORIGINS)),
    min_size=1,
    max_size=25,
)


def byte_order_key(key: EventKey) -> tuple[int, bytes]:
    return (key.date, key.origin.encode("utf-8"))


def apply_all(events: list[tuple[str, int, str]]) -> tuple[dict[str, EventKey], dict[str, list[str]]]:
    """Apply events like a node: stored once by id, merged with decide(). Returns the current key
    per topic and the ids per outcome."""
    current: dict[str, EventKey] = {}
    stored: set[str] = set()
    outcomes: dict[str, list[str]] = {outcome.value: [] for outcome in Outcome}
    for path, date, origin in events:
        eid = event_id(path, date, origin)
        key = EventKey(date, origin)
        outcome = Outcome.EXISTING if eid in stored else decide(current.get(path), key)
        if eid not in stored:
            # decide() alone may only answer EXISTING for the current event itself.
            assert outcome is not Outcome.EXISTING
        outcomes[outcome.value].append(eid)
        if outcome is Outcome.OK:
            current[path] = key
        if outcome is not Outcome.EXISTING:
            stored.add(eid)
    return current, outcomes


@settings(max_examples=200)
@given(events=events_strategy, data=st.data())
def test_any_order_with_duplicates_converges_to_the_maximum(
    events: list[tuple[str, int, str]], data: st.DataObject
) -> None:
    duplicated = events + data.draw(st.lists(st.sampled_from(events), max_size=10), label="duplicates")
    permuted = data.draw(st.permutations(duplicated), label="order")

    current, outcomes = apply_all(permuted)

    for path in {path for path, _, _ in events}:
        expected = max((EventKey(d, o) for p, d, o in events if p == path), key=byte_order_key)
        assert current[path] == expected
        assert winner(EventKey(d, o) for p, d, o in permuted if p == path) == expected
    assert set(current) == {path for path, _, _ in events}

    distinct = {event_id(*event) for event in events}
    stored = outcomes["ok"] + outcomes["too_late"]
    # Every distinct event is stored exactly once; every other arrival is "existing".
    assert Counter(stored) == Counter(distinct)
    assert len(outcomes["existing"]) == len(permuted) - len(distinct)
    # The winners were stored "ok" (they can never be too_late: nothing beats them).
    winners = {event_id(path, key.date, key.origin) for path, key in current.items()}
    assert winners <= set(outcomes["ok"])

    # Same final state and same stored set in the original order.
    current_again, outcomes_again = apply_all(duplicated)
    assert current_again == current
    assert set(outcomes_again["ok"]) | set(outcomes_again["too_late"]) == distinct
    assert len(outcomes_again["existing"]) == len(outcomes["existing"])


@settings(max_examples=200)
@given(
    current=st.tuples(st.sampled_from(DATES), st.sampled_from(ORIGINS)),
    incoming=st.tuples(st.sampled_from(DATES), st.sampled_from(ORIGINS)),
)
def test_decide_agrees_with_byte_order(current: tuple[int, str], incoming: tuple[int, str]) -> None:
    before, after = EventKey(*current), EventKey(*incoming)
    outcome = decide(before, after)
    if byte_order_key(after) > byte_order_key(before):
        assert outcome is Outcome.OK
    elif byte_order_key(after) == byte_order_key(before):
        assert outcome is Outcome.EXISTING
    else:
        assert outcome is Outcome.TOO_LATE


@settings(max_examples=200)
@given(
    origins=st.lists(st.text(st.characters(codec="utf-8"), min_size=1, max_size=4), min_size=1, max_size=8)
)
def test_winner_of_equal_dates_is_the_greatest_origin_as_utf8_bytes(origins: list[str]) -> None:
    best = winner(EventKey(DATE, origin) for origin in origins)
    assert best is not None
    assert best.origin.encode() == max(origin.encode() for origin in origins)


@pytest.mark.parametrize("outcome", list(Outcome))
def test_outcome_values_are_the_wire_statuses(outcome: Outcome) -> None:
    assert outcome.value in {"ok", "too_late", "existing"}
    assert Outcome(outcome.value) is outcome
