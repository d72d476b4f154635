"""Rank parallel candidates: reject those whose insertion adds syntax errors, order the rest
by model confidence, drop duplicates."""

from __future__ import annotations

from dataclasses import dataclass

import tree_sitter

from .hole import Document
from .languages import parse


@dataclass(frozen=True)
class Candidate:
    text: str
    confidence: float
    steps: int


@dataclass(frozen=True)
class Ranked:
    accepted: list[Candidate]  # best first
    rejected: list[tuple[Candidate, str]]  # with the reason


def syntax_errors(tree: tree_sitter.Tree) -> int:
    """ERROR and MISSING nodes in the tree (subtrees without errors are skipped)."""
    count, stack = 0, [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            count += 1
        stack.extend(child for child in node.children if child.has_error or child.is_missing)
    return count


def rank(doc: Document, start: int, end: int, candidates: list[Candidate]) -> Ranked:
    """Candidates replace doc.text[start:end]."""
    baseline = syntax_errors(doc.tree)
    accepted: dict[str, Candidate] = {}  # text -> most confident copy
    rejected: dict[str, tuple[Candidate, str]] = {}
    for cand in candidates:
        if cand.text in rejected:
            continue
        if cand.text in accepted:
            if cand.confidence > accepted[cand.text].confidence:
                accepted[cand.text] = cand
            continue
        errors = syntax_errors(parse(doc.language, doc.text[:start] + cand.text + doc.text[end:]))
        if errors > baseline:
            rejected[cand.text] = (cand, f"adds {errors - baseline} syntax error(s)")
        else:
            accepted[cand.text] = cand
    return Ranked(sorted(accepted.values(), key=lambda c: -c.confidence), list(rejected.values()))
