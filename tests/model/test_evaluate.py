"""Evaluation: metrics, the test sandbox, the cases file, the baseline, and a whole run."""

from __future__ import annotations

import json
import time

import pytest

from dgls.model.training import evaluate
from dgls.model.training.baseline import LongestMatchCompleter
from dgls.model.training.evaluate import CaseConfig, CaseError, edit_similarity, exact_match, levenshtein, load_cases
from dgls.model.training.fim import HOLE_KINDS, LINE, LINE_SUFFIX
from dgls.model.training.sandbox import SandboxLimits, run_python

from .training_data import build_corpus

FAST_LIMITS = SandboxLimits(timeout_s=2.0, memory_mib=256, file_mib=1)


def test_metrics():
    assert levenshtein("kitten", "sitting") == 3 and levenshtein("", "abc") == 3 and levenshtein("same", "same") == 0
    assert edit_similarity("return x", "return x") == 1.0 and edit_similarity("", "") == 1.0
    assert edit_similarity("return y", "return x") == pytest.approx(1 - 1 / 8)
    assert edit_similarity("", "abcd") == 0.0
    assert exact_match("x = 1  \n", "x = 1") and not exact_match(" x = 1", "x = 1")


@pytest.mark.parametrize("program, status", [
    ("assert sum([1, 2]) == 3\n", "passed"),
    ("assert 1 == 2, 'wrong'\n", "failed"),
    ("raise SystemExit(3)\n", "failed"),
    ("x = bytearray(2 * 2**30)\n", "failed"),  # over the address-space limit: MemoryError
    ("open('big', 'wb').write(b'x' * 4 * 2**20)\n", "failed"),  # over the file-size limit
])
def test_sandbox_outcomes(program, status):
    assert run_python(program, FAST_LIMITS).status == status


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited and waits only to be reaped


def test_sandbox_times_out_and_kills_what_the_program_started():
    program = ("import subprocess, sys\n"
               "child = subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
               "print(child.pid, flush=True)\n"
               "while True: pass\n")
    t0 = time.monotonic()
    outcome = run_python(program, SandboxLimits(timeout_s=1.0))
    assert outcome.status == "timeout" and time.monotonic() - t0 < 5
    child = int(outcome.output.split()[0])
    deadline = time.monotonic() + 3
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_sandbox_is_isolated_in_an_empty_directory():
    program = ("import os, sys\n"
               "assert sys.flags.isolated == 1\n"
               "assert os.listdir('.') == [], os.listdir('.')\n"
               "assert 'PYTHONPATH' not in os.environ\n"
               "print('checked')\n")
    outcome = run_python(program, FAST_LIMITS)
    assert outcome.status == "passed" and outcome.output == "checked\n"


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("line, message", [
    ("{not json", r"cases.jsonl:2: not JSON"),
    ('["a list"]', r"cases.jsonl:2: a case must be a JSON object"),
    ('{"prefix": "x", "suffix": ""}', r"cases.jsonl:2: 'middle' must be a string"),
    ('{"prefix": "x", "suffix": "", "middle": "y", "tests": 3}', r"cases.jsonl:2: 'tests' must be a string"),
    ('{"prefix": "x", "suffix": "", "middle": "y", "kind": "paragraph"}', r"cases.jsonl:2: unknown kind 'paragraph'"),
])
def test_bad_case_lines_are_named(tmp_path, line, message):
    path = write_lines(tmp_path / "cases.jsonl", ['{"prefix": "a = ", "suffix": "", "middle": "1"}', line])
    with pytest.raises(CaseError, match=message):
        load_cases(path)


def test_cli_bad_cases_file_is_one_line(tmp_path, capsys, random_checkpoint):
    path = write_lines(tmp_path / "cases.jsonl", ['{"prefix": 1}'])
    assert evaluate.main(["run", "--model", str(random_checkpoint), "--cases", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cases.jsonl:1: 'prefix' must be a string" in err


def test_kind_defaults_to_the_engines_rule(tmp_path):
    path = write_lines(tmp_path / "c.jsonl", [
        json.dumps({"prefix": "def f():\n    ret", "suffix": "\n", "middle": "urn 1"}),
        json.dumps({"prefix": "def f():\n    ", "suffix": "\n", "middle": "return 1"}),
    ])
    assert [c.kind for c in load_cases(path)] == [LINE_SUFFIX, LINE]


def test_baseline_copies_the_longest_matching_context():
    corpus = ["import os\n\ndef load(path):\n    with open(path) as f:\n        return f.read()\n\nx = 1\n",
              "def save(path):\n    with open(path) as f:\n        return f.write()\n"]
    c = LongestMatchCompleter(corpus)
    # Two lines of context pick load's body over save's; the rest of the line is copied.
    assert c.complete("def load(path):\n    with open(path) as f:\n        ret", "\n", multiline=False) == "urn f.read()"
    # A block: copied until the line the suffix continues with.
    assert c.complete("import os\n\ndef load(path):\n    ", "\n\nx = 1\n", multiline=True) == \
        "with open(path) as f:\n        return f.read()"
    # A cursor inside a word: the next token must extend it ("op" -> "open").
    assert c.complete("unseen()\n    with op", "", multiline=False) == "en(path) as f:"
    # No context allows the word to go on: the corpus's most common word starting so (order 0).
    assert c.complete("zzz = wi", "", multiline=False).startswith("th")
    assert c.complete("zzz", "", multiline=False) == ""  # nothing ever followed an unseen token


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("eval"))


def test_cases_come_from_heldout_packages_and_cut_files_exactly(small_corpus, tmp_path):
    from dgls.model.training import corpus

    cases = evaluate.build_cases(small_corpus, CaseConfig(n=12, prefix_chars=300, suffix_chars=100),
                                 lambda middle, kind: len(middle) < 400)
    files = {r["path"]: r["text"] for r in corpus.read_split(small_corpus, "heldout")}
    assert len(cases) == 12 and {c["kind"] for c in cases} == set(HOLE_KINDS)
    for c in cases:
        assert c["package"] in ("stdlib/colorsys", "stdlib/graphlib")
        assert c["prefix"] + c["middle"] + c["suffix"] in files[c["path"]]
        assert len(c["prefix"]) <= 300 and len(c["suffix"]) <= 100


def test_a_run_reports_model_and_baseline_side_by_side(small_corpus, random_checkpoint, tmp_path, capsys):
    cases = write_lines(tmp_path / "cases.jsonl", [
        json.dumps({"id": "add", "prefix": "def add(a, b):\n    return ", "suffix": "\n", "middle": "a + b",
                    "tests": "assert add(2, 3) == 5"}),
        json.dumps({"id": "block", "kind": "block", "prefix": "def f(x):\n    ", "suffix": "\n",
                    "middle": "y = x * 2\n    return y", "tests": "assert f(2) == 4"}),
    ])
    report = tmp_path / "report.json"
    assert evaluate.main(["run", "--model", str(random_checkpoint), "--cases", str(cases), "--baseline-corpus",
                          str(small_corpus), "--max-steps", "2", "--device", "cpu", "--report", str(report),
                          "--timeout-s", "5"]) == 0
    out = capsys.readouterr().out
    assert "dgls" in out and "baseline" in out and "single-line" in out and "multi-line" in out
    data = json.loads(report.read_text())
    assert set(data["rows"]) == {"dgls", "baseline"}
    for rows in data["rows"].values():
        assert [r["id"] for r in rows] == ["add", "block"]
        assert all(r["passed"] in (True, False) and r["test_status"] for r in rows)
    assert [r["steps"] for r in data["rows"]["dgls"]] == [2, 2]
    assert data["summary"]["dgls"]["all"]["with_tests"] == 2
