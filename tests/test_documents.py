"""Position encodings and incremental edits of the server's own document store."""

from dataclasses import dataclass

import pytest

from dgls.documents import UTF8, UTF16, UTF32, DocumentStore, from_offset, to_offset

LINE = "a🎉漢b\n"  # 🎉: 4 UTF-8 bytes, 2 UTF-16 units; 漢: 3 bytes, 1 unit


@pytest.mark.parametrize("encoding,column", [(UTF8, 8), (UTF16, 4), (UTF32, 3)])
def test_the_same_place_in_each_encoding(encoding, column):
    assert to_offset(LINE, 0, column, encoding) == 3  # before "b"
    assert from_offset(LINE, 3, encoding) == (0, column)


@pytest.mark.parametrize("encoding,column", [(UTF16, 2), (UTF8, 3), (UTF8, 6)])
def test_inside_a_character_clamps_to_its_start(encoding, column):
    offset = to_offset(LINE, 0, column, encoding)
    assert offset in (1, 2) and LINE[:offset] in ("a", "a🎉")
    assert to_offset(LINE, 0, column, encoding) <= len("a🎉")


def test_past_the_end_clamps():
    assert to_offset("ab\ncd", 0, 99) == 2
    assert to_offset("ab\ncd", 99, 0) == 5
    assert to_offset("ab\r\ncd", 0, 99) == 2  # not inside the CRLF


@dataclass
class Pos:
    line: int
    character: int


@dataclass
class Rng:
    start: Pos
    end: Pos


@dataclass
class Change:
    text: str
    range: Rng | None = None


def test_incremental_changes_apply_in_order_with_crlf():
    store = DocumentStore()
    store.open("u", "python", 1, "one\r\ntwo\r\nthree")
    doc = store.change("u", 2, [Change("2", Rng(Pos(1, 0), Pos(1, 3))), Change("!", Rng(Pos(2, 5), Pos(2, 5)))], UTF16)
    assert doc.text == "one\r\n2\r\nthree!" and doc.version == 2
    store.change("u", 3, [Change("whole")], UTF16)
    assert store.get("u").text == "whole"


def test_line_separator_characters_are_not_line_breaks():
    text = "a\u2028b = 1\nc"
    assert to_offset(text, 1, 0) == text.index("c")
