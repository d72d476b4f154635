"""The line splitter and position helpers (LSP line breaks only)."""

from dgls.documents import UTF32, from_offset, to_offset
from dgls.text import line_starts, split_lines


def test_only_lsp_line_breaks_split():
    text = "a\r\nb\rc\nd\u2028e\x0cf\x85g"
    assert split_lines(text) == ["a", "b", "c", "d\u2028e\x0cf\x85g"]
    assert line_starts(text) == [0, 3, 5, 7]


def test_trailing_newline_makes_an_empty_last_line():
    assert split_lines("x\n") == ["x", ""]


def test_offsets_round_trip_and_clamp():
    text = "ab\r\ncd\n"
    assert to_offset(text, 1, 1, UTF32) == 5 and from_offset(text, 5, UTF32) == (1, 1)
    assert to_offset(text, 0, 99, UTF32) == 2  # clamped to the line's end, before "\r\n"
    assert to_offset(text, 99, 0, UTF32) == len(text)
    assert to_offset(text, -1, 0, UTF32) == 0


def test_lone_surrogates_become_replacement_characters_in_place():
    from dgls.text import valid_unicode

    assert valid_unicode("a\ud800b\udfff🎉") == "a\ufffdb\ufffd🎉"
    assert valid_unicode("plain") == "plain"
