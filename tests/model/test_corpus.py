"""The corpus builder: licenses, deduplication, the held-out split, shards; code is never run."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from dgls.model.training import corpus
from dgls.model.training.corpus import CorpusConfig, CorpusError, classify_license, function_bodies


@pytest.mark.parametrize("expression, field, classifiers, expected", [
    ("MIT", None, [], ("MIT", True)),
    ("Apache-2.0 OR BSD-2-Clause", None, [], ("Apache-2.0 OR BSD-2-Clause", True)),
    ("Apache-2.0 AND Apache-2.0 WITH LLVM-exception AND MIT", None, [], (None, True)),
    ("MPL-2.0 AND MIT", None, [], ("MPL-2.0 AND MIT", False)),  # tqdm: MPL is file-level copyleft
    ("GPL-3.0-or-later OR MIT", None, [], (None, True)),  # a choice: MIT is enough
    ("(MIT", None, [], (None, False)),  # unparseable expressions are refused
    (None, "Apache 2.0 License", [], ("Apache-2.0", True)),
    (None, "BSD 3-Clause License\n\nCopyright (c) ...", [], ("BSD-3-Clause", True)),
    (None, "Copyright (c) 2015, someone\nAll rights reserved.", ["License :: OSI Approved :: BSD License"], ("BSD", True)),
    (None, "", ["License :: OSI Approved :: GNU General Public License v3 (GPLv3)"], (None, False)),
    (None, "", ["License :: OSI Approved :: MIT License", "License :: OSI Approved :: Apache Software License"],
     ("MIT AND Apache", True)),
    (None, "UNKNOWN", [], ("unknown", False)),
])
def test_license_classification(expression, field, classifiers, expected):
    recorded, permissive = classify_license(expression, field, classifiers)
    assert permissive is expected[1]
    if expected[0] is not None:
        assert recorded == expected[0]


def test_function_bodies_start_after_the_docstring_on_their_own_line():
    text = (
        "def one(): return 1\n"  # body shares the def line: not a hole
        "async def two(x):\n"
        '    """Doc."""\n'
        "    y = 'é' + x\n"  # non-ASCII: ast's byte columns become character offsets
        "    return y\n"
        "class K:\n"
        "    def three(self):\n"
        '        """Only a docstring."""\n'
        "    def four(self):\n"
        "        def inner():\n"
        "            pass\n"
        "        return inner\n"
    )
    spans = function_bodies(text, ast.parse(text))
    bodies = [text[a:b] for a, b in spans]
    assert bodies == [
        "y = 'é' + x\n    return y",
        "def inner():\n            pass\n        return inner",
        "pass",
    ]


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _module(name: str, n: int = 6) -> str:
    body = "".join(f"    total += {i} * value\n" for i in range(n))
    return f"def {name}(value):\n    total = 0\n{body}    return total\n"


def _dist(site: Path, name: str, meta: str, files: dict[str, str]) -> None:
    info = site / f"{name}-1.0.dist-info"
    _write(info / "METADATA", f"Metadata-Version: 2.4\nName: {name}\nVersion: 1.0\n{meta}\n")
    record = [f"{name}-1.0.dist-info/METADATA,,"]
    for rel, text in files.items():
        _write(site / rel, text)
        record.append(f"{rel},,")
    record.append("../../bin/tool,,")  # outside site-packages: ignored
    _write(info / "RECORD", "\n".join(record) + "\n")


@pytest.fixture
def sources(tmp_path):
    std, site = tmp_path / "stdlib", tmp_path / "site"
    marker = tmp_path / "EXECUTED"
    _write(std / "alpha.py", _module("alpha"))
    _write(std / "alpha_copy.py", _module("alpha").replace("\n", "   \n\n"))  # same code, other whitespace
    _write(std / "beta" / "__init__.py", _module("beta"))
    _write(std / "beta" / "core.py", _module("beta_core", 9))
    _write(std / "gamma.py", f"open({str(marker)!r}, 'w').write('ran')\n" + _module("gamma"))
    _write(std / "test" / "test_alpha.py", _module("test_alpha"))  # the stdlib's test suite: skipped
    _write(std / "latin.py", "# -*- coding: latin-1 -*-\n".encode() + _module("latin").encode() + b"x = '\xe9'\n")
    _write(std / "broken.py", _module("broken") + "def (:\n")
    _write(std / "huge.py", _module("huge", 4000))
    _write(std / "tiny.py", "x = 1\n")
    # An evaluation set's task, as a package might carry it: never trained on.
    _write(std / "evalset.py", 'def has_close_elements(numbers, threshold):\n    """ Check if in given list of numbers, '
           'are any two numbers closer to each other than given threshold."""\n' + _module("evalset"))
    _write(std / "harness.py", "# runs the HumanEval problems\n" + _module("harness"))
    _dist(site, "mitpkg", "License-Expression: MIT", {
        "mitpkg/__init__.py": _module("mit_init"),
        "mitpkg/_vendor/six.py": _module("six_vendored"),
    })
    _dist(site, "gplpkg", "Classifier: License :: OSI Approved :: GNU General Public License v3 (GPLv3)",
          {"gplpkg/__init__.py": _module("gpl")})
    _dist(site, "bsdpkg", "License: Copyright (c) someone\nClassifier: License :: OSI Approved :: BSD License",
          {"bsdpkg/__init__.py": _module("bsd_init"), "bsdpkg/more.py": _module("alpha")})  # a copy of alpha
    return std, site, marker


def _records(out: Path) -> list[dict]:
    return [rec for split in corpus.SPLITS for rec in corpus.read_split(out, split)]


def test_build_records_licenses_dedupes_splits_and_never_runs_code(sources, tmp_path):
    std, site, marker = sources
    out = tmp_path / "corpus"
    cfg = CorpusConfig(site_dirs=(str(site),), heldout=("stdlib/beta", "six"), heldout_fraction=0.0,
                       max_file_kib=64)
    manifest = corpus.build(out, cfg, stdlib_root=std)
    assert not marker.exists()

    records = _records(out)
    by_path = {r["path"]: r for r in records}
    assert set(by_path) == {"alpha.py", "beta/__init__.py", "beta/core.py", "gamma.py",
                            "mitpkg/__init__.py", "mitpkg/_vendor/six.py", "bsdpkg/__init__.py"}
    assert by_path["alpha.py"]["license"] == "PSF-2.0" and by_path["alpha.py"]["package"] == "stdlib/alpha"
    assert by_path["mitpkg/__init__.py"]["license"] == "MIT"
    assert by_path["bsdpkg/__init__.py"]["license"] == "BSD"
    assert by_path["mitpkg/_vendor/six.py"]["package"] == "mitpkg"
    assert by_path["mitpkg/_vendor/six.py"]["group"] == "six"  # vendored code splits with its origin
    assert manifest["excluded_distributions"] == {"gplpkg": "GNU General Public License v3 (GPLv3)"}
    assert manifest["skipped"] == {"duplicate": 2, "not_utf8": 1, "unparseable": 1, "too_large": 1, "too_short": 1,
                                   "benchmark": 2}

    heldout = {r["path"] for r in corpus.read_split(out, "heldout")}
    assert heldout == {"beta/__init__.py", "beta/core.py", "mitpkg/_vendor/six.py"}
    train_groups = {r["group"] for r in corpus.read_split(out, "train")}
    assert not train_groups & set(manifest["heldout_groups"])
    assert by_path["alpha.py"]["functions"] and all(isinstance(x, int) for x in by_path["alpha.py"]["functions"][0])


def test_heldout_fraction_splits_whole_groups(sources, tmp_path):
    std, site, _ = sources
    out = tmp_path / "corpus"
    corpus.build(out, CorpusConfig(site_dirs=(str(site),), heldout_fraction=0.5, max_file_kib=64), stdlib_root=std)
    groups = {split: {r["group"] for r in corpus.read_split(out, split)} for split in corpus.SPLITS}
    assert groups["train"] and groups["heldout"] and not groups["train"] & groups["heldout"]


def test_shards_stay_under_the_size_limit(tmp_path):
    std, out = tmp_path / "stdlib", tmp_path / "corpus"
    for i in range(12):
        _write(std / f"mod{i}.py", _module(f"mod{i}", 6 + i))
    # 2 KiB shards hold a few of these records each; every record is still written once.
    cfg = CorpusConfig(site_packages=False, heldout_fraction=0.0, shard_mib=2 / 1024, max_file_kib=1)
    manifest = corpus.build(out, cfg, stdlib_root=std)
    shards = manifest["shards"]["train"]
    assert len(shards) > 2
    assert all((out / name).stat().st_size <= 2048 for name in shards)
    assert len(corpus.read_split(out, "train")) == manifest["files"]["train"] == 12


def test_max_files_limits_a_smoke_corpus(sources, tmp_path):
    std, _, _ = sources
    manifest = corpus.build(tmp_path / "c", CorpusConfig(site_packages=False, max_files=2, max_file_kib=64),
                            stdlib_root=std)
    assert sum(manifest["files"].values()) == 2


def test_bad_corpus_directories_give_one_line_errors(sources, tmp_path):
    std, _, _ = sources
    with pytest.raises(CorpusError, match="no manifest.json"):
        corpus.read_split(tmp_path, "train")
    out = tmp_path / "corpus"
    corpus.build(out, CorpusConfig(site_packages=False, heldout_fraction=0.0, max_file_kib=64), stdlib_root=std)
    with pytest.raises(CorpusError, match="not empty"):
        corpus.build(out, CorpusConfig(site_packages=False), stdlib_root=std)
    shard = out / json.loads((out / "manifest.json").read_text())["shards"]["train"][0]
    shard.write_text(shard.read_text() + "{not json\n")
    with pytest.raises(CorpusError, match=r"train-00000.jsonl:\d+: not JSON"):
        corpus.read_split(out, "train")


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert corpus.main([str(tmp_path / "full"), "--no-site-packages"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not empty" in err
