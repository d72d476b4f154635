"""Hole kinds over real code situations in several languages, with the real grammars."""

from __future__ import annotations

import pytest

from dgls.hole import BLOCK, LINE, NONE, Document, classify, window
from dgls.languages import by_name

from .cursor import at

# (language, document with █ at the cursor, expected kind, expected reason fragment)
CASES = [
    # --- Python: finish the line
    ("python", "def add(a, b):\n    return █", LINE, "finish"),
    ("python", "for i in █", LINE, "finish"),
    ("python", "x = compute(█)", LINE, "finish"),
    ("python", "print(f\"{name}\", █)\n", LINE, "finish"),
    ("python", "if x > 0█:\n    pass\n", LINE, "finish"),
    ("python", "items = [█]", LINE, "finish"),
    ("python", "value = obj.█", LINE, "finish"),
    ("python", "f\"{user.█}\"", LINE, "finish"),  # code inside an f-string interpolation
    ("python", "import █", LINE, "finish"),
    ("python", "x = 1  █", LINE, "finish"),
    # --- Python: blocks
    ("python", "def f(x):\n    █", BLOCK, "new body"),
    ("python", "def f(x):\n█", BLOCK, "new body"),
    ("python", "class A:\n    def m(self):\n        █\n", BLOCK, "new body"),
    ("python", "def f(x):█", BLOCK, "opens a block"),
    ("python", "for item in items:█\n", BLOCK, "opens a block"),
    ("python", "def f(x):\n    y = x + 1\n    █\n    return y\n", BLOCK, "blank line"),
    ("python", "import os\n\n█", BLOCK, "blank line"),
    ("python", "try:\n    run()\nexcept ValueError:\n    █", BLOCK, "new body"),
    ("python", "if a:\n    pass\nelse:█", BLOCK, "opens a block"),
    # --- Python: no code here
    ("python", "x = \"hello █ world\"", NONE, "string"),
    ("python", "x = \"unterminated █", NONE, "string"),
    ("python", "x = 'abc█", NONE, "string"),
    ("python", "# a comment █", NONE, "comment"),
    ("python", "x = 1  # trailing █", NONE, "comment"),
    ("python", "\"\"\"Docstring █\n\"\"\"", NONE, "string"),
    ("python", "def f():\n    \"\"\"Multi\n    line █ doc\n    \"\"\"\n", NONE, "string"),
    ("python", "resu█lt = 1", NONE, "middle of a word"),
    ("python", "x = █compute()", NONE, "text right"),
    ("python", "foo(█bar)", NONE, "text right"),
    # --- JavaScript
    ("javascript", "function add(a, b) {\n  return █\n}", LINE, "finish"),
    ("javascript", "function add(a, b) {\n  █\n}", BLOCK, "new body"),
    ("javascript", "if (ready) {█", BLOCK, "opens a block"),
    ("javascript", "const s = `total: ${█}`;", LINE, "finish"),
    ("javascript", "const s = 'text █';", NONE, "string"),
    ("javascript", "// note █", NONE, "comment"),
    ("javascript", "/* block █ comment */", NONE, "comment"),
    ("javascript", "/* closed */ █", LINE, "finish"),
    ("javascript", "console.log(█);", LINE, "finish"),
    # --- TypeScript
    ("typescript", "interface A {\n  name: string;\n  █\n}", BLOCK, "blank line"),
    ("typescript", "const n: number = █;", LINE, "finish"),
    ("typescript", "let s: string = \"a█\";", NONE, "string"),
    # --- Go
    ("go", "package m\n\nfunc add(a, b int) int {\n\treturn █\n}\n", LINE, "finish"),
    ("go", "package m\n\nfunc add(a, b int) int {\n\t█\n}\n", BLOCK, "new body"),
    ("go", "package m\n\nvar s = \"go █ string\"\n", NONE, "string"),
    ("go", "package m\n\n// comment █\n", NONE, "comment"),
    ("go", "package m\n\nfunc main() {█", BLOCK, "opens a block"),
    # --- Rust
    ("rust", "fn add(a: i32, b: i32) -> i32 {\n    █\n}\n", BLOCK, "new body"),
    ("rust", "fn main() {\n    let x = █;\n}\n", LINE, "finish"),
    ("rust", "fn main() {\n    let s = \"rust █\";\n}\n", NONE, "string"),
    ("rust", "// rust comment █", NONE, "comment"),
    ("rust", "fn main() {\n    println!(█);\n}\n", LINE, "finish"),
]


@pytest.mark.parametrize("language,marked,kind,reason", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_hole_kind(language, marked, kind, reason):
    text, offset = at(marked)
    hole = classify(Document(text, by_name(language)), offset)
    assert (hole.kind, reason in hole.reason) == (kind, True), hole


def test_at_least_forty_cases_over_five_languages():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) >= 5


def test_block_indentation_follows_the_opener():
    text, offset = at("class A:\n    def m(self):█\n")
    hole = classify(Document(text, by_name("python")), offset)
    assert hole.needs_newline and hole.indent == "        "
    text, offset = at("func f() {\n\tif x {\n\t\t█\n\t}\n}\n")
    assert classify(Document(text, by_name("go")), offset).indent == "\t\t"


def test_two_space_files_keep_their_unit():
    text, offset = at("def f():\n  x = 1\n  if x:█\n")
    assert classify(Document(text, by_name("python")), offset).indent == "    "


def test_forced_mode_overrides_kind_but_not_none():
    text, offset = at("def add(a, b):\n    return █")
    doc = Document(text, by_name("python"))
    assert classify(doc, offset, mode="block").kind == BLOCK
    text, offset = at("x = \"in █ string\"")
    assert classify(Document(text, by_name("python")), offset, mode="line").kind == NONE


def test_rest_of_line_is_reported_for_auto_closed_characters():
    text, offset = at("x = compute(█)")
    assert classify(Document(text, by_name("python")), offset).rest_of_line == ")"


def test_non_ascii_text_positions():
    text, offset = at("s = \"héllo wörld 🎉\"\nt = len(█)\n")
    hole = classify(Document(text, by_name("python")), offset)
    assert hole.kind == LINE and hole.rest_of_line == ")"
    text, offset = at("s = \"héllo 🎉 █\"\n")
    assert classify(Document(text, by_name("python")), offset).kind == NONE


# --- windows


def count_chars(s: str) -> int:
    return len(s)


PROGRAM = """import os


def first():
    return 1


def second():
    value = first()
    return value


def third():
    return second() + 1
"""


def test_window_keeps_everything_within_budget():
    text, offset = PROGRAM, PROGRAM.index("return value") + len("return ")
    w = window(Document(text, by_name("python")), offset, count_chars, 10_000, 10_000)
    assert w.prefix + w.suffix == text


def test_window_cuts_prefix_at_a_statement_start():
    text = PROGRAM
    offset = text.index("return value") + len("return ")
    w = window(Document(text, by_name("python")), offset, count_chars, 60, 10_000)
    assert w.prefix.startswith("def second():") and len(w.prefix) <= 60


def test_window_cuts_suffix_at_a_statement_end():
    text = PROGRAM
    offset = text.index("value = first()")
    w = window(Document(text, by_name("python")), offset, count_chars, 10_000, 40)
    assert w.suffix == "value = first()\n    return value"


def test_window_falls_back_to_characters_on_one_huge_line():
    text = "x = [" + ", ".join(str(i) for i in range(2000)) + "]\n"
    offset = len(text) - 3
    w = window(Document(text, by_name("python")), offset, count_chars, 50, 50)
    assert len(w.prefix) == 50 and text[w.prefix_start:offset] == w.prefix


def test_window_uses_the_token_counter():
    text, offset = PROGRAM, PROGRAM.index("return value") + len("return ")
    calls = []

    def count(s):
        calls.append(s)
        return len(s.split())

    w = window(Document(text, by_name("python")), offset, count, 8, 8)
    assert calls and len(w.prefix.split()) <= 8 and len(w.suffix.split()) <= 8
