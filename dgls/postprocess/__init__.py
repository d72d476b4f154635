"""Post-processing: small filters applied in order to each candidate middle.

Each filter is a function (text, context) -> text, or None to drop the candidate. Filters
are written not to raise; the pipeline still guards each call, so one faulty filter costs a
candidate, never a request. The order lives in PIPELINE and nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..hole import Hole

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    hole: Hole
    prefix: str  # the document before the cursor (the whole of it, not the model's window)
    suffix: str  # the document after the cursor
    indent_unit: str  # the file's indentation step ("\t" or spaces)


Filter = Callable[[str, Context], "str | None"]

from . import (  # noqa: E402  (the filters import Context from here)
    auto_closed,
    block_dedent,
    drop_empty,
    indentation,
    line_end,
    repeats_next_lines,
    strip_fences,
    suffix_overlap,
)

PIPELINE: tuple[tuple[str, Filter], ...] = (
    ("strip_fences", strip_fences.apply),
    ("line_end", line_end.apply),
    ("indentation", indentation.apply),
    ("block_dedent", block_dedent.apply),
    ("suffix_overlap", suffix_overlap.apply),
    ("auto_closed", auto_closed.apply),
    ("repeats_next_lines", repeats_next_lines.apply),
    ("drop_empty", drop_empty.apply),
)
FILTERS = dict(PIPELINE)


def run(text: str, ctx: Context, pipeline=PIPELINE) -> tuple[str | None, str | None]:
    """(the processed middle, None), or (None, the name of the filter that dropped it)."""
    for name, step in pipeline:
        try:
            result = step(text, ctx)
        except Exception:  # a bug in one filter must not fail the request
            log.exception("post-processing filter %s failed; candidate dropped", name)
            return None, name
        if result is None:
            return None, name
        text = result
    return text, None
