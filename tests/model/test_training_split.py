"""Training lives in dgls.model.training; serving never imports it. The campaign's state
kept in git, written before the split, still resumes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
KEPT = ROOT / "model" / "campaign" / "dgls-tiny" / "checkpoint"


def test_serving_never_imports_training_code():
    code = ("import sys, dgls.server, dgls.worker, dgls.cli, dgls.model.engine, dgls.model.loader, dgls.model.export_hf\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('dgls.model.training'))\n"
            "assert not loaded, loaded")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(not (KEPT / "state.json").exists(), reason="no campaign state in this checkout")
def test_the_campaign_state_kept_in_git_resumes_with_this_code():
    from dgls.model.config import from_hf_config
    from dgls.model.network import DiffusionGemma
    from dgls.model.training import train
    from dgls.model.training.fim import FimConfig, ObjectiveConfig
    from dgls.model.training.train_state import load_checkpoint

    saved = json.loads((KEPT / "state.json").read_text())
    cfg = train.TrainConfig(**saved["train"])
    fim, obj = FimConfig(**saved["fim"]), ObjectiveConfig(**saved["objective"])
    # The settings it was made with pass the resume check of today's trainer.
    train._compare(saved["train"], dataclasses.asdict(cfg), "training option")
    train._compare(saved["fim"], dataclasses.asdict(fim), "FIM option")
    train._compare(saved["objective"], dataclasses.asdict(obj), "objective option")
    model = DiffusionGemma(from_hf_config(saved["model_config"]))
    optimizer = train.make_optimizer(model, cfg, torch.device("cpu"), train.inert_parameters(model.cfg, obj))
    meta = load_checkpoint(KEPT, model, optimizer)
    assert meta["step"] == saved["step"] > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert optimizer.state  # the moments came back too
