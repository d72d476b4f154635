"""Golden cases for every post-processing filter and the whole pipeline (tests/golden/postprocess/*.toml).

A case names a filter (or "pipeline"), a document with █ at the cursor, the model's candidate
middle, and either `expected` or `dropped = true`. `xfail = "why"` marks a known-bad case
(strict: it must fail until fixed)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from dgls import postprocess
from dgls.hole import Document, classify, indent_unit
from dgls.languages import by_name

from .cursor import at

GOLDEN = Path(__file__).parent / "golden" / "postprocess"


def cases():
    for path in sorted(GOLDEN.glob("*.toml")):
        for i, case in enumerate(tomllib.loads(path.read_text())["case"]):
            marks = [pytest.mark.xfail(reason=case["xfail"], strict=True)] if "xfail" in case else []
            yield pytest.param(case, id=f"{path.stem}-{i}", marks=marks)


def context_for(case) -> postprocess.Context:
    text, offset = at(case["document"])
    lang = by_name(case.get("language", "python"))
    doc = Document(text, lang)
    hole = classify(doc, offset, mode=case.get("kind", "auto"))
    return postprocess.Context(hole, text[:offset], text[offset:], indent_unit(text, lang))


@pytest.mark.parametrize("case", list(cases()))
def test_golden(case):
    ctx = context_for(case)
    if case["filter"] == "pipeline":
        got, _ = postprocess.run(case["candidate"], ctx)
    else:
        got = postprocess.FILTERS[case["filter"]](case["candidate"], ctx)
    assert got == (None if case.get("dropped") else case["expected"]), case["name"]


def test_every_filter_has_golden_cases():
    covered = {case["filter"] for path in GOLDEN.glob("*.toml") for case in tomllib.loads(path.read_text())["case"]}
    assert set(postprocess.FILTERS) | {"pipeline"} <= covered


def test_a_failing_filter_drops_the_candidate_not_the_request(caplog):
    def broken(text, ctx):
        raise RuntimeError("bug")

    ctx = context_for({"document": "x = █"})
    assert postprocess.run("1", ctx, pipeline=(("broken", broken),)) == (None, "broken")
    assert "broken failed" in caplog.text
