"""Every user-facing default of the completion path, in one typed dataclass.

The CLI's flags and (later) the server's initializationOptions read their defaults from here
and never restate them. Model and sampler defaults live with the model (dgls/model/config.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    # Latency budget per request: the sampler stops and keeps its best canvas when it runs out.
    line_budget_ms: int = 400
    block_budget_ms: int = 1200
    # Parallel candidates (one shared prompt encoding): more when the user asked explicitly.
    candidates_invoked: int = 4
    candidates_automatic: int = 2
    # Canvas length in tokens by hole kind: a diffusion model writes the whole canvas, and the
    # canvas length shapes the answer (too long invites rambling, too short truncates).
    line_canvas: int = 32
    block_canvas: int = 128
    # Prompt windows around the cursor, in tokens of the model's tokenizer.
    prefix_tokens: int = 1024
    suffix_tokens: int = 256
    # Files larger than this are not completed (and not read by the CLI).
    max_file_bytes: int = 2_000_000

    def canvas_for(self, kind: str) -> int:
        return self.block_canvas if kind == "block" else self.line_canvas

    def budget_for(self, kind: str) -> int:
        return self.block_budget_ms if kind == "block" else self.line_budget_ms


DEFAULTS = Options()
