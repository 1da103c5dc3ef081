"""Byte ranges of GET (RFC 9110, 14): the Range parser, If-Range, and a reader that starts in the
middle of a chunked blob, compared with Python's slicing of the same bytes."""

from __future__ import annotations

import os

import pytest
from django.test.utils import override_settings
from hypothesis import given
from hypothesis import strategies as st

from spread_api import headers, raw
from spread_core import api, reader
from spread_core.exceptions import RangeNotSatisfiable
from spread_core.paths import TopicPath

from .blob_stores import spread_with


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, (0, 1)),
        ("bytes=2-5", 10, (2, 6)),
        ("bytes=2-", 10, (2, 10)),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=-30", 10, (0, 10)),  # a suffix longer than the value: all of it
        ("bytes=5-100", 10, (5, 10)),  # clipped to the end
        ("BYTES = 1 - 2", 10, (1, 3)),
        (None, 10, None),
        ("bytes=5-2", 10, None),  # invalid: the whole value
        ("bytes=0-1,4-5", 10, None),  # several ranges: the whole value
        ("items=0-1", 10, None),  # another unit
        ("bytes=", 10, None),
        ("bytes=a-b", 10, None),
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert headers.parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=-1", 0)]
)
def test_a_range_past_the_end_is_not_satisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as refused:
        headers.parse_range(header, size)
    assert refused.value.status_code == 416 and refused.value.size == size


@given(size=st.integers(0, 1000), first=st.integers(0, 1100), last=st.integers(0, 1100) | st.none())
def test_a_first_last_range_is_pythons_slice_of_the_value(size: int, first: int, last: int | None) -> None:
    header = f"bytes={first}-{'' if last is None else last}"
    value = bytes(range(256)) * 4
    value = value[:size]
    if last is not None and last < first:
        assert headers.parse_range(header, size) is None
    elif first >= size:
        with pytest.raises(RangeNotSatisfiable):
            headers.parse_range(header, size)
    else:
        start, stop = headers.parse_range(header, size)  # type: ignore[misc]
        expected = value[first:] if last is None else value[first : last + 1]
        assert value[start:stop] == expected and expected


@given(size=st.integers(1, 1000), suffix=st.integers(1, 1100))
def test_a_suffix_range_is_the_last_bytes(size: int, suffix: int) -> None:
    value = os.urandom(size)
    start, stop = headers.parse_range(f"bytes=-{suffix}", size)  # type: ignore[misc]
    assert value[start:stop] == value[-suffix:]


@pytest.mark.django_db(transaction=True)
@override_settings(SPREAD=spread_with(INLINE_MAX=16, CHUNK_SIZE=1000))
def test_if_range_and_reading_a_range_of_a_chunked_blob() -> None:
    pieces = [os.urandom(n) for n in (1000, 1000, 700, 1000, 1)]  # stored as chunks of uneven sizes
    value = b"".join(pieces)
    api.post("ranges/blob", iter(pieces), content_type="video/mp4")
    event = reader.current_event(TopicPath.from_canonical("ranges/blob"))
    assert event is not None and event.is_blob and event.complete
    etag = f'"{event.event_id}"'
    assert raw.requested_range(event, {"range": "bytes=1500-2799"}) == (1500, 2800)
    assert raw.requested_range(event, {"range": "bytes=1500-2799", "if-range": etag}) == (1500, 2800)
    assert raw.requested_range(event, {"range": "bytes=1500-", "if-range": '"another-event"'}) is None
    assert (
        raw.requested_range(event, {"range": "bytes=1500-", "if-range": "Wed, 02 Dec 2026 10:00:00 GMT"})
        is None
    )
    assert raw.range_headers(event, (1500, 2800)) == {
        "Content-Range": f"bytes 1500-2799/{len(value)}",
        "Content-Length": "1300",
    }
    for start, stop in [
        (0, 1),
        (0, len(value)),
        (999, 1001),
        (1500, 2800),
        (2700, 2701),
        (len(value) - 1, len(value)),
    ]:
        assert reader.ValueReader(event, (start, stop)).read() == value[start:stop], (start, stop)
    assert reader.ValueReader(event).read() == value

    api.post("ranges/inline", b"0123456789abc")
    inline = reader.current_event(TopicPath.from_canonical("ranges/inline"))
    assert inline is not None and not inline.is_blob
    assert reader.ValueReader(inline, (3, 7)).read() == b"3456"
