"""Frames are written with orjson (``consumers._dumps``): the same text the standard library's
compact, non-ASCII-keeping JSON gives, for anything an event or a frame holds; what orjson
refuses (a client's ``ref`` with an integer over 64 bits) is still written."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from spread_api.consumers import BATCH_FRAME_TEXT, _batched_texts, _dumps

#: What events and frames hold: text (any Unicode but lone surrogates, which frames refuse),
#: 64-bit integers, booleans, null, nested. Floats are left out: both write the same number,
#: spelt differently for some (1e+16 / 1e16).
plain_text = st.text(st.characters(exclude_categories=("Cs",)))
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | plain_text
values = st.recursive(
    scalars, lambda inner: st.lists(inner) | st.dictionaries(plain_text, inner), max_leaves=20
)


def standard(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@given(values)
def test_orjson_frames_equal_the_standard_librarys(data: Any) -> None:
    assert _dumps(data) == standard(data)


def test_an_integer_over_64_bits_is_still_written() -> None:
    frame = {"type": "error", "ref": 2**70}
    assert _dumps(frame) == standard(frame)


@given(st.lists(st.integers(0, 6000), min_size=1, max_size=120))
def test_batched_texts_keep_every_event_in_order_under_the_frame_bound(sizes: list[int]) -> None:
    events: list[Any] = [{"iteration": number, "value": "v" * size} for number, size in enumerate(sizes, 1)]
    groups = list(_batched_texts(events))
    assert [event for texts, _ in groups for event in json.loads(f"[{texts}]")] == events
    for texts, last in groups:
        group = json.loads(f"[{texts}]")
        assert last == group[-1]["iteration"]
        assert len(texts) <= BATCH_FRAME_TEXT or len(group) == 1  # only a lone event may exceed it
