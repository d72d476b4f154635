"""Build the training corpus: permissively licensed Python source already on this machine.

Sources, read and never executed (files are read as bytes and parsed with `ast`, which runs
nothing): the standard library of the running interpreter (PSF-2.0) and the distributions
installed in site-packages whose metadata declares a permissive license (License-Expression,
else the License field, else the classifiers; see `classify_license`). Each file records its
package, license and path; files are deduplicated by a hash of their normalised text; whole
packages are held out for evaluation (stdlib by top-level module, vendored copies under the
package they vendor, so `pip/_vendor/rich` and `rich` land in the same split).

    python -m dgls.model.training.corpus OUT_DIR [--site-dirs DIR ...] [--no-stdlib] [--max-files N]

Writes OUT_DIR/{train,heldout}-NNNNN.jsonl (shards of at most --shard-mib) and manifest.json.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata as md
import json
import os
import re
import sys
import sysconfig
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ..dataclass_args import add_arguments, from_arguments, opt
from .jsonl import parse_object
from .progress import Progress

SPLITS = ("train", "heldout")
MANIFEST = "manifest.json"

# SPDX ids dgls trains on: licenses that ask at most for attribution. Copyleft (GPL, LGPL,
# MPL, EPL, ...) and unknown licenses are left out.
PERMISSIVE = {
    "MIT", "MIT-0", "MIT-CMU", "BSD", "BSD-2-Clause", "BSD-3-Clause", "0BSD", "Apache", "Apache-2.0",
    "PSF-2.0", "Python-2.0", "CNRI-Python", "ISC", "Zlib", "BSL-1.0", "CC0-1.0", "Unlicense",
}
# Free-text License fields and trove classifiers, lower-cased, to SPDX ids.
LICENSE_ALIASES = {
    "mit": "MIT", "mit license": "MIT", "the mit license": "MIT", "mit-0": "MIT-0", "mit-cmu": "MIT-CMU",
    "bsd": "BSD", "bsd license": "BSD", "new bsd license": "BSD-3-Clause", "modified bsd license": "BSD-3-Clause",
    "bsd 3-clause": "BSD-3-Clause", "bsd 3-clause license": "BSD-3-Clause", "3-clause bsd": "BSD-3-Clause",
    "bsd-3-clause": "BSD-3-Clause", "bsd 2-clause": "BSD-2-Clause", "bsd 2-clause license": "BSD-2-Clause",
    "simplified bsd": "BSD-2-Clause", "bsd-2-clause": "BSD-2-Clause",
    "apache": "Apache", "apache 2": "Apache-2.0", "apache 2.0": "Apache-2.0", "apache-2.0": "Apache-2.0",
    "apache 2.0 license": "Apache-2.0", "apache license 2.0": "Apache-2.0", "apache license, version 2.0": "Apache-2.0",
    "apache license version 2.0": "Apache-2.0", "apache software license": "Apache",
    "psf": "PSF-2.0", "psf license": "PSF-2.0", "psf-2.0": "PSF-2.0", "python software foundation license": "PSF-2.0",
    "isc": "ISC", "isc license": "ISC", "isc license (iscl)": "ISC",
    "zlib/libpng license": "Zlib", "the unlicense (unlicense)": "Unlicense", "unlicense": "Unlicense",
    "boost software license 1.0 (bsl-1.0)": "BSL-1.0", "mit no attribution license (mit-0)": "MIT-0",
    "cc0 1.0 universal (cc0 1.0) public domain dedication": "CC0-1.0",
}
_SPDX_TOKEN = re.compile(r"\(|\)|[A-Za-z0-9.+:-]+")
# Directories of the standard library that are test suites (some files there are broken on
# purpose) or hold other distributions.
STDLIB_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
VENDOR_DIRS = {"_vendor", "vendor", "_vendored", "vendored", "extern", "_extern"}


class CorpusError(ValueError):
    """A corpus directory or option dgls cannot use; the message is one line."""


@dataclass(frozen=True)
class CorpusConfig:
    stdlib: bool = opt(True, "include the running interpreter's standard library (PSF-2.0)")
    site_packages: bool = opt(True, "include permissively licensed distributions in --site-dirs")
    site_dirs: tuple[str, ...] = opt((), "directories of installed distributions (empty: this interpreter's)")
    heldout_fraction: float = opt(0.1, "fraction of packages (split groups) held out for evaluation")
    heldout: tuple[str, ...] = opt((), "split groups always held out (e.g. stdlib/json requests)")
    shard_mib: float = opt(16.0, "largest JSONL shard")
    max_file_kib: int = opt(256, "larger files are skipped (generated tables, data)")
    min_lines: int = opt(5, "files with fewer non-blank lines are skipped")
    max_line_chars: int = opt(1000, "a file with a longer line is skipped (minified or data)")
    max_files: int = opt(0, "stop after this many kept files (0: no limit; smoke runs)")

    def __post_init__(self):
        if not 0 <= self.heldout_fraction < 1:
            raise CorpusError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        if self.shard_mib * 1024 < 2 * self.max_file_kib:
            raise CorpusError(f"shard_mib={self.shard_mib} cannot hold a {self.max_file_kib} KiB file twice over")


# --- licenses ------------------------------------------------------------------------------


def _spdx_permissive(expression: str) -> bool | None:
    """Whether an SPDX expression allows dgls to train on the code: AND needs every part
    permissive, OR any; WITH adds an exception (a permission) to its license. None: unparseable."""
    tokens = _SPDX_TOKEN.findall(expression)
    if not tokens or "".join(tokens) != re.sub(r"\s+", "", expression):
        return None
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def factor() -> bool:
        tok = take()
        if tok == "(":
            value = expr()
            if take() != ")":
                raise ValueError
            return value
        if tok.upper() in ("AND", "OR", "WITH", ")"):
            raise ValueError
        value = tok.rstrip("+") in PERMISSIVE
        if (peek() or "").upper() == "WITH":
            take()
            take()
        return value

    def term() -> bool:
        value = factor()
        while (peek() or "").upper() == "AND":
            take()
            value = factor() and value
        return value

    def expr() -> bool:
        value = term()
        while (peek() or "").upper() == "OR":
            take()
            value = term() or value
        return value

    try:
        value = expr()
    except (ValueError, IndexError):
        return None
    return value if pos == len(tokens) else None


def classify_license(expression: str | None, license_field: str | None, classifiers: list[str]) -> tuple[str, bool]:
    """(the license as recorded, whether it is permissive) from a distribution's metadata."""
    if expression and expression.strip():
        permissive = _spdx_permissive(expression.strip())
        return expression.strip(), bool(permissive)
    text = (license_field or "").strip()
    if text.upper() == "UNKNOWN":  # setuptools' placeholder for "not given"
        text = ""
    if text:
        first = text.splitlines()[0].strip().lower()
        if first in LICENSE_ALIASES:
            return LICENSE_ALIASES[first], True
        if "\n" not in text and _spdx_permissive(text) is not None:
            return text, bool(_spdx_permissive(text))
    names = [c.split("::")[-1].strip() for c in classifiers if c.startswith("License ::")]
    names = [n for n in names if n != "OSI Approved"]
    if names:
        ids = [LICENSE_ALIASES.get(n.lower(), n) for n in names]
        # Several license classifiers may mean a choice or a combination; assume a combination.
        return " AND ".join(ids), all(i in PERMISSIVE for i in ids)
    return text.splitlines()[0][:80] if text else "unknown", False


# --- files ---------------------------------------------------------------------------------


@dataclass
class SourceFile:
    path: Path  # on disk
    rel: str  # as recorded and shown to the model ("json/decoder.py", "requests/models.py")
    package: str  # "stdlib/json", or the distribution's normalised name
    group: str  # the unit of the train/held-out split
    license: str
    source: str  # "stdlib" | "site"
    version: str


def _normalise_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _vendored_group(rel: str, package: str) -> str:
    parts = rel.split("/")
    for i, part in enumerate(parts[:-1]):
        if part in VENDOR_DIRS and i + 1 < len(parts):
            return _normalise_name(parts[i + 1].removesuffix(".py"))
    return package


def stdlib_files(root: Path) -> Iterator[SourceFile]:
    version = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in STDLIB_SKIP_DIRS)
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            package = "stdlib/" + rel.split("/")[0].removesuffix(".py")
            yield SourceFile(path, rel, package, package, "PSF-2.0", "stdlib", version)


def site_files(site_dirs: list[Path], excluded: dict[str, str]) -> Iterator[SourceFile]:
    """Files of permissively licensed distributions; `excluded` collects the others' licenses."""
    seen: set[str] = set()
    dists = [d for d in md.distributions(path=[str(p) for p in site_dirs]) if d.metadata["Name"]]
    for dist in sorted(dists, key=lambda d: _normalise_name(d.metadata["Name"])):
        name = _normalise_name(dist.metadata["Name"])
        if name in seen:
            continue
        seen.add(name)
        meta = dist.metadata
        license_, ok = classify_license(meta.get("License-Expression"), meta.get("License"),
                                        meta.get_all("Classifier") or [])
        if not ok:
            excluded[name] = license_
            continue
        base = Path(dist.locate_file("")).resolve()
        for entry in sorted(dist.files or [], key=str):
            rel = Path(str(entry)).as_posix()
            if not rel.endswith(".py") or rel.startswith("../") or Path(rel).name.startswith("__editable__"):
                continue
            path = (base / rel).resolve()
            if not path.is_relative_to(base) or not path.is_file():
                continue
            yield SourceFile(path, rel, name, _vendored_group(rel, name), license_, "site", meta["Version"] or "")


# --- content -------------------------------------------------------------------------------


def normalised_hash(text: str) -> str:
    """Hash of the text with trailing spaces, blank lines and line-ending style ignored, so
    copies that differ only in formatting count as one."""
    lines = (line.rstrip() for line in text.splitlines())
    return hashlib.sha256("\n".join(line for line in lines if line).encode("utf-8")).hexdigest()


def function_bodies(text: str, tree: ast.Module) -> list[list[int]]:
    """[start, end) character offsets of function bodies that start on their own line (after
    the docstring, if any): the holes a 'write this function' completion fills."""
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    lines = text.splitlines(keepends=True)

    def offset(lineno: int, col_bytes: int) -> int:
        line = lines[lineno - 1]
        return starts[lineno - 1] + len(line.encode("utf-8")[:col_bytes].decode("utf-8", "ignore"))

    spans = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = node.body
        if ast.get_docstring(node, clean=False) is not None:
            body = body[1:]
        if not body or body[0].lineno <= node.lineno:
            continue
        first, last = body[0], body[-1]
        start = offset(first.lineno, first.col_offset)
        if lines[first.lineno - 1][: start - starts[first.lineno - 1]].strip():
            continue  # the body shares its line with something else
        spans.append([start, offset(last.end_lineno, last.end_col_offset)])
    return sorted(spans)


# Evaluation sets never enter training. They are not on this machine, so a file is refused
# when it names one or carries the text of its prompts (phrases from HumanEval's and MBPP's
# task statements, which code outside those sets does not contain).
BENCHMARK_MARKERS = re.compile(
    r"human[_-]?eval|\bmbpp\b|openai_humaneval"
    r"|closer to each other than given threshold"
    r"|Input to this function is a string containing multiple groups of nested parentheses"
    r"|Given a positive floating point number, it can be decomposed into"
    r"|You're given a list of deposit and withdrawal operations on a bank account",
    re.IGNORECASE)


def is_benchmark_text(text: str) -> bool:
    return BENCHMARK_MARKERS.search(text) is not None


def read_source(path: Path, cfg: CorpusConfig) -> tuple[str | None, str, list[list[int]]]:
    """(text or None, skip reason, function bodies). The file is read, parsed, never run."""
    try:
        if path.stat().st_size > cfg.max_file_kib * 1024:
            return None, "too_large", []
        raw = path.read_bytes()
    except OSError:
        return None, "unreadable", []
    text = decode_source(raw)
    if text is None:
        return None, "not_utf8", []
    lines = text.split("\n")
    if sum(1 for line in lines if line.strip()) < cfg.min_lines:
        return None, "too_short", []
    if max(map(len, lines)) > cfg.max_line_chars:
        return None, "long_lines", []
    if is_benchmark_text(text):
        return None, "benchmark", []
    tree = parse_quietly(text)
    if tree is None:
        return None, "unparseable", []
    return text, "", function_bodies(text, tree)


def decode_source(raw: bytes) -> str | None:
    """UTF-8 text without a BOM, line ends made "\n"; None when it is not UTF-8."""
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_quietly(text: str) -> ast.Module | None:
    """The Python syntax tree, or None; parsed, never run."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes and the like: not our code to lint
            return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def heldout_group(group: str, cfg: CorpusConfig) -> bool:
    if group in cfg.heldout:
        return True
    digest = hashlib.sha256(f"dgls-heldout:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < cfg.heldout_fraction


# --- output --------------------------------------------------------------------------------


class ShardWriter:
    """JSONL shards `{split}-NNNNN.jsonl`, each at most `max_bytes` (a record is never split)."""

    def __init__(self, directory: Path, split: str, max_bytes: int):
        self.directory, self.split, self.max_bytes = directory, split, max_bytes
        self.index, self.size, self.handle = -1, 0, None
        self.files: list[str] = []

    def write(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        if self.handle is None or self.size + len(line) > self.max_bytes:
            self._next()
        self.handle.write(line)
        self.size += len(line)

    def _next(self) -> None:
        if self.handle is not None:
            self.handle.close()
        self.index += 1
        name = f"{self.split}-{self.index:05d}.jsonl"
        self.files.append(name)
        self.handle = open(self.directory / name, "wb")
        self.size = 0

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def default_site_dirs() -> list[Path]:
    paths = sysconfig.get_paths()
    return sorted({Path(paths["purelib"]), Path(paths["platlib"])})


def build(out: Path, cfg: CorpusConfig, *, stdlib_root: Path | None = None) -> dict:
    """Write the corpus into `out` (which must not hold one already); returns the manifest."""
    if out.exists() and any(out.iterdir()):
        raise CorpusError(f"{out} is not empty; give a new directory")
    out.mkdir(parents=True, exist_ok=True)
    excluded: dict[str, str] = {}
    candidates: list[SourceFile] = []
    if cfg.stdlib:
        candidates += stdlib_files(stdlib_root or Path(sysconfig.get_paths()["stdlib"]))
    if cfg.site_packages:
        dirs = [Path(d) for d in cfg.site_dirs] or default_site_dirs()
        missing = [str(d) for d in dirs if not d.is_dir()]
        if missing:
            raise CorpusError(f"site directory not found: {', '.join(missing)}")
        candidates += site_files(dirs, excluded)

    writers = {split: ShardWriter(out, split, int(cfg.shard_mib * 2**20)) for split in SPLITS}
    seen: set[str] = set()
    skipped: Counter[str] = Counter()
    files: Counter[str] = Counter()
    chars: Counter[str] = Counter()
    licenses: Counter[str] = Counter()
    packages: dict[str, dict] = {}
    groups: dict[str, set[str]] = {split: set() for split in SPLITS}
    bar = Progress("corpus", len(candidates), "files")
    try:
        for src in candidates:
            if cfg.max_files and sum(files.values()) >= cfg.max_files:
                break
            bar.update(extra=f"kept {sum(files.values())}")
            text, reason, functions = read_source(src.path, cfg)
            digest = normalised_hash(text) if text is not None else ""
            if text is not None and digest in seen:
                reason = "duplicate"
            if reason:
                skipped[reason] += 1
                continue
            seen.add(digest)
            split = "heldout" if heldout_group(src.group, cfg) else "train"
            writers[split].write({
                "path": src.rel, "package": src.package, "group": src.group, "license": src.license,
                "source": src.source, "version": src.version, "sha256": digest, "functions": functions,
                "text": text,
            })
            files[split] += 1
            chars[split] += len(text)
            groups[split].add(src.group)
            licenses[src.license] += 1
            entry = packages.setdefault(src.package, {"license": src.license, "files": 0, "splits": []})
            entry["files"] += 1
            if split not in entry["splits"]:
                entry["splits"].append(split)
    finally:
        for w in writers.values():
            w.close()
        bar.close()
    manifest = {
        "config": asdict(cfg),
        "python": sys.version.split()[0],
        "files": dict(files),
        "characters": dict(chars),
        "shards": {split: writers[split].files for split in SPLITS},
        "licenses": dict(licenses.most_common()),
        "skipped": dict(skipped.most_common()),
        "excluded_distributions": dict(sorted(excluded.items())),
        "heldout_groups": sorted(groups["heldout"]),
        "packages": packages,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


# --- reading -------------------------------------------------------------------------------

RECORD_FIELDS = {"path": str, "package": str, "group": str, "license": str, "text": str, "functions": list}


def _read_shard(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            rec = parse_object(line, f"{path}:{n}", CorpusError, "a record")
            bad = [k for k, t in RECORD_FIELDS.items() if not isinstance(rec.get(k), t)]
            if bad:
                raise CorpusError(f"{path}:{n}: missing or malformed {', '.join(bad)}")
            yield rec


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorpusError(f"{directory}: no {MANIFEST}; build it with `python -m dgls.model.training.corpus`") from None
    except (OSError, json.JSONDecodeError) as e:
        raise CorpusError(f"{path}: unreadable ({e})") from None


def read_split(directory: Path, split: str) -> list[dict]:
    """Every record of one split, in the order they were written."""
    if split not in SPLITS:
        raise CorpusError(f"unknown split {split!r}; choose {', '.join(SPLITS)}")
    manifest = read_manifest(directory)
    records = [rec for name in manifest["shards"][split] for rec in _read_shard(Path(directory) / name)]
    if not records:
        raise CorpusError(f"{directory}: the {split} split is empty")
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="directory to write (must be new or empty)")
    add_arguments(ap, CorpusConfig)
    args = ap.parse_args(argv)
    try:
        manifest = build(args.out, from_arguments(CorpusConfig, args))
    except CorpusError as e:
        print(f"dgls.model.training.corpus: {e}", file=sys.stderr)
        return 2
    for split in SPLITS:
        print(f"{split}: {manifest['files'].get(split, 0)} files, "
              f"{manifest['characters'].get(split, 0) / 2**20:.1f} Mi characters, "
              f"{len(manifest['shards'][split])} shards")
    print(f"held-out groups: {len(manifest['heldout_groups'])}; skipped: {manifest['skipped']}; "
          f"excluded distributions: {len(manifest['excluded_distributions'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
