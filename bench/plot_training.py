"""Held-out loss against CPU-hours, from the trainer's logs (one line per run).

    python bench/plot_training.py OUT.png NAME=RUN/train_log.jsonl [NAME=...]

Reads the held-out records the trainer writes at every checkpoint ({"heldout_canvas_loss",
"heldout_ar_loss", "heldout_noised_acc", "cpu_seconds", ...}), plots the three against
CPU-hours and prints them as a table too. A log written before
cpu_seconds existed falls back to wall seconds x threads given as NAME@THREADS=PATH.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def heldout(path: Path, threads: int) -> list[dict]:
    """Held-out records with cumulative CPU-hours. Chunks run before the trainer counted CPU
    time count wall seconds x threads; the CPU counter, started at a later resume, goes on
    from there."""
    rows, offset = [], 0.0
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if "heldout_canvas_loss" not in r:
            continue
        if "cpu_seconds" in r:
            cpu = offset + r["cpu_seconds"]
        else:
            cpu = offset = r["train_seconds"] * threads
        rows.append({**r, "cpu_hours": cpu / 3600})
    return rows


def main(argv: list[str]) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out, runs = Path(argv[0]), []
    for spec in argv[1:]:
        name, path = spec.split("=", 1)
        name, _, threads = name.partition("@")
        runs.append((name, heldout(Path(path), int(threads or 1))))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, rows in runs:
        hours = [r["cpu_hours"] for r in rows]
        axes[0].plot(hours, [r["heldout_canvas_loss"] for r in rows], marker="o", label=name)
        axes[1].plot(hours, [r["heldout_ar_loss"] for r in rows], marker="o", label=name)
        scored = [r for r in rows if "heldout_noised_acc" in r]  # logged since 2026-12-02
        axes[2].plot([r["cpu_hours"] for r in scored], [r["heldout_noised_acc"] for r in scored], marker="o", label=name)
        for r in rows:
            print(f"{name:>12}  step {r['step']:>6}  {r['cpu_hours']:.3f} CPU-h  canvas {r['heldout_canvas_loss']:.4f}  "
                  f"middle {r['heldout_middle_loss']:.4f}  acc {r['heldout_middle_acc']:.3f}  noised acc {r.get('heldout_noised_acc', float('nan')):.3f}  next-token {r['heldout_ar_loss']:.4f}")
    axes[0].set(title="held-out diffusion loss (canvas)", xlabel="CPU-hours", ylabel="cross-entropy")
    axes[1].set(title="held-out next-token loss (prompt)", xlabel="CPU-hours")
    axes[2].set(title="held-out accuracy where the noise changed the canvas", xlabel="CPU-hours")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
