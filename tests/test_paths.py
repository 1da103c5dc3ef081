"""Topic paths: parsing raw URL paths, the canonical form, validation limits and the tree helpers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spread_core.exceptions import InvalidPath
from spread_core.paths import (
    MAX_SEGMENT_BYTES,
    MAX_SEGMENTS,
    TopicPath,
    canonical_ancestors,
    covers_canonical,
    intersect_prefixes,
)

# --- parsing ----------------------------------------------------------------------------------


def test_escaped_slash_stays_inside_its_segment() -> None:
    path = TopicPath.from_url(b"a%2Fb/c")
    assert path.segments == ("a/b", "c")
    assert path.canonical == "a%2Fb/c"


def test_lowercase_escape_is_accepted_and_canonicalised_to_uppercase() -> None:
    path = TopicPath.from_url(b"a%2fb/c")
    assert path.segments == ("a/b", "c")
    assert path.canonical == "a%2Fb/c"


def test_unneeded_escapes_decode_to_the_same_topic() -> None:
    assert TopicPath.from_url(b"%61/b") == TopicPath(("a", "b"))
    assert TopicPath.from_url(b"%61/b").canonical == "a/b"


def test_utf8_escapes_decode_to_text() -> None:
    path = TopicPath.from_url(b"%C3%A9t%C3%A9/x%20y")
    assert path.segments == ("été", "x y")
    assert path.canonical == "%C3%A9t%C3%A9/x%20y"


def test_empty_raw_path_is_the_root() -> None:
    root = TopicPath.from_url(b"")
    assert root.segments == ()
    assert root.is_root
    assert root.canonical == ""
    assert TopicPath.from_canonical("") == root


def test_root_cannot_hold_a_value() -> None:
    with pytest.raises(InvalidPath):
        TopicPath(()).require_topic()
    topic = TopicPath(("a",))
    assert topic.require_topic() is topic


def test_from_canonical_accepts_hand_written_non_ascii() -> None:
    path = TopicPath.from_canonical("été/x")
    assert path.segments == ("été", "x")
    assert path.canonical == "%C3%A9t%C3%A9/x"


def test_from_canonical_rejects_an_unpaired_surrogate_as_an_invalid_path() -> None:
    with pytest.raises(InvalidPath):
        TopicPath.from_canonical("a/\ud800")


def test_coerce_accepts_a_path_a_canonical_string_or_segments() -> None:
    expected = TopicPath(("a/b", "c"))
    assert TopicPath.coerce(expected) is expected
    assert TopicPath.coerce("a%2Fb/c") == expected
    assert TopicPath.coerce(["a/b", "c"]) == expected
    assert TopicPath.coerce(("a/b", "c")) == expected


def test_str_is_the_canonical_form() -> None:
    assert str(TopicPath(("a/b", "c d"))) == "a%2Fb/c%20d"


# --- rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"a//b", id="empty-middle-segment"),
        pytest.param(b"a/", id="trailing-slash"),
        pytest.param(b"/a", id="leading-slash"),
        pytest.param(b"/", id="only-slash"),
        pytest.param(b".", id="dot"),
        pytest.param(b"..", id="dotdot"),
        pytest.param(b"a/./b", id="dot-segment"),
        pytest.param(b"a/../b", id="dotdot-segment"),
        pytest.param(b"a/%2E%2E", id="escaped-dotdot"),
        pytest.param(b"%2e", id="escaped-dot"),
        pytest.param(b"a%00b", id="nul"),
        pytest.param(b"a/%0A", id="newline"),
        pytest.param(b"%7F", id="del"),
        pytest.param(b"%1B", id="escape"),
        pytest.param(b"%C2%85", id="c1-control-nel"),
        pytest.param(b"a\tb", id="raw-tab"),
        pytest.param(b"%zz", id="non-hex-escape"),
        pytest.param(b"a%4", id="short-escape"),
        pytest.param(b"a%", id="bare-percent"),
        pytest.param(b"%4/b", id="short-escape-before-slash"),
        pytest.param(b"%ff", id="invalid-utf8-byte"),
        pytest.param(b"%C3", id="truncated-utf8"),
        pytest.param(b"%C0%AF", id="overlong-utf8"),
        pytest.param(b"%ED%A0%80", id="encoded-surrogate"),
    ],
)
def test_invalid_raw_paths_are_rejected(raw: bytes) -> None:
    with pytest.raises(InvalidPath):
        TopicPath.from_url(raw)


@pytest.mark.parametrize(
    "segments",
    [
        pytest.param(("",), id="empty"),
        pytest.param(("a", ""), id="empty-last"),
        pytest.param((".",), id="dot"),
        pytest.param(("..",), id="dotdot"),
        pytest.param(("a\x00",), id="nul"),
        pytest.param(("a\n",), id="newline"),
        pytest.param(("\x7f",), id="del"),
        pytest.param(("\ud800",), id="lone-surrogate"),
    ],
)
def test_invalid_segments_are_rejected(segments: tuple[str, ...]) -> None:
    with pytest.raises(InvalidPath):
        TopicPath(segments)


def test_segment_of_255_bytes_is_accepted_and_256_rejected() -> None:
    assert MAX_SEGMENT_BYTES == 255
    assert TopicPath(("a" * 255,)).segments == ("a" * 255,)
    assert TopicPath.from_url(b"a" * 255).segments == ("a" * 255,)
    with pytest.raises(InvalidPath):
        TopicPath(("a" * 256,))
    with pytest.raises(InvalidPath):
        TopicPath.from_url(b"a" * 256)


def test_segment_limit_counts_utf8_bytes_not_characters() -> None:
    fits = "é" * 127 + "a"  # 255 bytes, 128 characters
    too_long = "é" * 128  # 256 bytes, 128 characters
    assert TopicPath((fits,)).segments == (fits,)
    assert TopicPath.from_url(TopicPath((fits,)).canonical.encode()).segments == (fits,)
    with pytest.raises(InvalidPath):
        TopicPath((too_long,))
    with pytest.raises(InvalidPath):
        TopicPath.from_url(b"%C3%A9" * 128)


def test_32_segments_are_accepted_and_33_rejected() -> None:
    assert MAX_SEGMENTS == 32
    assert len(TopicPath.from_url(b"/".join([b"s"] * 32)).segments) == 32
    assert len(TopicPath(("s",) * 32).segments) == 32
    with pytest.raises(InvalidPath):
        TopicPath.from_url(b"/".join([b"s"] * 33))
    with pytest.raises(InvalidPath):
        TopicPath(("s",) * 33)


def test_ten_thousand_segments_are_rejected() -> None:
    with pytest.raises(InvalidPath):
        TopicPath.from_url(b"/".join([b"s"] * 10_000))
    with pytest.raises(InvalidPath):
        TopicPath.from_canonical("/".join(["s"] * 10_000))


def test_escaped_slashes_do_not_count_as_segments() -> None:
    # 40 "a/b" pieces in one segment: one segment, well under the limit.
    path = TopicPath.from_url(b"%2F".join([b"a"] * 40))
    assert len(path.segments) == 1


# --- round trip -------------------------------------------------------------------------------

segment_strategy = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=20
).filter(lambda s: s not in (".", "..") and len(s.encode()) <= MAX_SEGMENT_BYTES)
segments_strategy = st.lists(segment_strategy, min_size=0, max_size=MAX_SEGMENTS).map(tuple)


@settings(max_examples=200)
@given(segments=segments_strategy)
def test_canonical_round_trips(segments: tuple[str, ...]) -> None:
    path = TopicPath(segments)
    canonical = path.canonical
    assert canonical.isascii()
    assert canonical.count("/") == max(len(segments) - 1, 0)
    assert TopicPath.from_canonical(canonical).segments == segments
    assert TopicPath.from_url(canonical.encode("ascii")).segments == segments


@settings(max_examples=200)
@given(segments=segments_strategy.filter(bool))
def test_canonical_ancestors_match_ancestors(segments: tuple[str, ...]) -> None:
    path = TopicPath(segments)
    assert canonical_ancestors(path.canonical) == [a.canonical for a in path.ancestors()]


@settings(max_examples=200)
@given(prefix=segments_strategy, other=segments_strategy)
def test_covers_canonical_agrees_with_covers(prefix: tuple[str, ...], other: tuple[str, ...]) -> None:
    a, b = TopicPath(prefix), TopicPath(other)
    assert covers_canonical(a.canonical, b.canonical) == a.covers(b)
    descendant = TopicPath((prefix + other)[:MAX_SEGMENTS])
    if descendant.segments[: len(prefix)] == prefix:
        assert a.covers(descendant)
        assert covers_canonical(a.canonical, descendant.canonical)


# --- tree helpers -----------------------------------------------------------------------------


def test_ancestors_go_from_root_to_the_path_itself() -> None:
    path = TopicPath(("a", "b/c", "d"))
    assert [a.segments for a in path.ancestors()] == [(), ("a",), ("a", "b/c"), ("a", "b/c", "d")]


def test_ancestors_of_the_root_is_the_root() -> None:
    assert list(TopicPath(()).ancestors()) == [TopicPath(())]


def test_covers() -> None:
    root, a, ab = TopicPath(()), TopicPath(("a",)), TopicPath(("a", "b"))
    assert root.covers(root)
    assert root.covers(ab)
    assert a.covers(a)
    assert a.covers(ab)
    assert not ab.covers(a)
    assert not a.covers(root)
    assert not a.covers(TopicPath(("ab",)))  # a segment prefix is not a path prefix
    assert not a.covers(TopicPath(("a/b",)))  # an escaped slash is not a separator
    assert not a.covers(TopicPath(("A", "b")))  # case matters
    assert not TopicPath(("b",)).covers(ab)


def test_covers_canonical_respects_segment_boundaries() -> None:
    assert covers_canonical("", "a/b")
    assert covers_canonical("a", "a")
    assert covers_canonical("a", "a/b")
    assert not covers_canonical("a", "ab")
    assert not covers_canonical("a", "a%2Fb")
    assert not covers_canonical("a/b", "a")


def test_canonical_ancestors() -> None:
    assert canonical_ancestors("") == [""]
    assert canonical_ancestors("a") == ["", "a"]
    assert canonical_ancestors("a/b%2Fc/d") == ["", "a", "a/b%2Fc", "a/b%2Fc/d"]


def test_intersect_prefixes_keeps_what_both_lists_cover() -> None:
    assert intersect_prefixes(["a", "b/c"], None) == ["a", "b/c"]
    assert intersect_prefixes(["a"], ["a/x", "a/y", "b"]) == ["a/x", "a/y"]
    assert intersect_prefixes(["a/x/1", "c"], ["a"]) == ["a/x/1"]
    assert intersect_prefixes([""], ["a", "b"]) == ["a", "b"]
    assert intersect_prefixes(["a"], []) == []
    assert intersect_prefixes(["ab"], ["a"]) == []  # "a" does not cover "ab"
