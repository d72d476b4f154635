"""Ranking parallel candidates with the real grammars."""

from dgls.hole import Document
from dgls.languages import by_name
from dgls.rank import Candidate, rank, syntax_errors

from .cursor import at


def ranked(marked, texts, language="python"):
    text, offset = at(marked)
    doc = Document(text, by_name(language))
    return rank(doc, offset, offset, [Candidate(t, c, 5) for t, c in texts])


def test_candidates_that_add_syntax_errors_are_rejected():
    r = ranked("def f(x):\n    return █\n", [("x + (", 0.9), ("x + 1", 0.5)])
    assert [c.text for c in r.accepted] == ["x + 1"]
    assert r.rejected[0][0].text == "x + (" and "syntax error" in r.rejected[0][1]


def test_errors_already_in_the_file_do_not_count_against_a_candidate():
    # The file is broken further down; a good candidate must still be accepted.
    r = ranked("def f(x):\n    return █\n\ndef g(:\n    pass\n", [("x * 2", 0.4)])
    assert [c.text for c in r.accepted] == ["x * 2"]


def test_order_is_by_confidence_and_duplicates_merge():
    r = ranked("value = █\n", [("1", 0.2), ("2", 0.9), ("1", 0.6)])
    assert [(c.text, c.confidence) for c in r.accepted] == [("2", 0.9), ("1", 0.6)]


def test_other_languages():
    r = ranked("function f(a) {\n  return █\n}\n", [("a +;", 0.9), ("a + 1;", 0.1)], "javascript")
    assert [c.text for c in r.accepted] == ["a + 1;"]


def test_syntax_error_count():
    assert syntax_errors(Document("x = 1\n", by_name("python")).tree) == 0
    assert syntax_errors(Document("x = (\n", by_name("python")).tree) >= 1
