"""The languages dgls completes: grammar (a pinned tree-sitter wheel), file extensions, and
the few syntax facts hole finding and post-processing need."""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from pathlib import PurePath

import tree_sitter


@dataclass(frozen=True)
class Language:
    name: str
    extensions: tuple[str, ...]
    module: str  # the grammar wheel's module
    function: str  # its function returning the grammar
    indent_unit: str  # used when a file shows no indentation of its own
    block_openers: tuple[str, ...]  # a line ending in one of these opens an indented block
    line_comment: str
    quotes: tuple[str, ...]  # string delimiters, longest first
    string_types: frozenset[str]
    comment_types: frozenset[str]
    code_in_string_types: frozenset[str]  # interpolations: code again inside a string
    block_keywords: tuple[str, ...] = ()  # indent languages: headers whose ':' opens a block


_C_STRINGS = frozenset({"string", "template_string", "string_fragment", "interpreted_string_literal",
                        "raw_string_literal", "string_literal", "char_literal", "rune_literal"})
_C_COMMENTS = frozenset({"comment", "line_comment", "block_comment"})

LANGUAGES: tuple[Language, ...] = (
    Language(
        "python", (".py", ".pyi"), "tree_sitter_python", "language", "    ", (":",), "#",
        ('"""', "'''", '"', "'"), frozenset({"string", "string_content"}), frozenset({"comment"}),
        frozenset({"interpolation"}),
        block_keywords=("def", "class", "if", "elif", "else", "for", "while", "with", "try", "except",
                        "finally", "async", "match", "case"),
    ),
    Language("javascript", (".js", ".mjs", ".cjs", ".jsx"), "tree_sitter_javascript", "language", "  ",
             ("{", "(", "["), "//", ('"', "'", "`"), _C_STRINGS, _C_COMMENTS, frozenset({"template_substitution"})),
    Language("typescript", (".ts", ".mts", ".cts"), "tree_sitter_typescript", "language_typescript", "  ",
             ("{", "(", "["), "//", ('"', "'", "`"), _C_STRINGS, _C_COMMENTS, frozenset({"template_substitution"})),
    Language("tsx", (".tsx",), "tree_sitter_typescript", "language_tsx", "  ",
             ("{", "(", "["), "//", ('"', "'", "`"), _C_STRINGS, _C_COMMENTS, frozenset({"template_substitution"})),
    Language("go", (".go",), "tree_sitter_go", "language", "\t", ("{", "("), "//", ('"', "`", "'"),
             _C_STRINGS | {"interpreted_string_literal_content"}, _C_COMMENTS, frozenset()),
    Language("rust", (".rs",), "tree_sitter_rust", "language", "    ", ("{", "("), "//", ('"',),
             _C_STRINGS | {"string_content"}, _C_COMMENTS, frozenset()),
)

BY_NAME = {lang.name: lang for lang in LANGUAGES}
BY_EXTENSION = {ext: lang for lang in LANGUAGES for ext in lang.extensions}


class UnsupportedLanguage(ValueError):
    pass


def for_path(path: str) -> Language:
    suffix = PurePath(path).suffix.lower()
    try:
        return BY_EXTENSION[suffix]
    except KeyError:
        known = ", ".join(sorted(BY_EXTENSION))
        raise UnsupportedLanguage(f"no language for {suffix or 'files without an extension'} (supported: {known})") from None


def by_name(name: str) -> Language:
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnsupportedLanguage(f"unsupported language {name!r} (supported: {', '.join(BY_NAME)})") from None


@functools.cache
def parser(lang: Language) -> tree_sitter.Parser:
    grammar = getattr(importlib.import_module(lang.module), lang.function)()
    return tree_sitter.Parser(tree_sitter.Language(grammar))


def parse(lang: Language, text: str) -> tree_sitter.Tree:
    return parser(lang).parse(text.encode("utf-8", "surrogatepass"))
