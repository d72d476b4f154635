"""The training script on a tiny config: the loss falls, chunks resume exactly, checkpoint and
export files are safetensors within the size limit, and the exported model loads and completes."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch
from safetensors import safe_open

from dgls.model.training import shards, train
from dgls.model.config import from_name
from dgls.model.engine import Engine
from dgls.model.training.fim import FimConfig, FimDataset, ObjectiveConfig, diffusion_loss
from dgls.model.network import DiffusionGemma
from dgls.model.prompt import InfillRequest
from dgls.model.tokenizer import Tokenizer
from dgls.model.training.train import TrainConfig, TrainError

from .training_data import build_corpus, train_tokenizer
from .training_data import one_thread  # noqa: F401  (autouse fixture)

LIMIT_MIB = 96 / 1024  # below the fp32 embedding's 128 KiB: the checkpoint must split it
FAST = TrainConfig(config="test-tiny", steps=6, batch_size=4, lr=3e-3, warmup_steps=2, line_canvas=16,
                   block_canvas=32, log_every=3, shard_mib=LIMIT_MIB, checkpoint_minutes=60.0,
                   precision="fp32")  # the same figures on every CPU (auto picks bf16 where it is native)
FIM = FimConfig(prefix_tokens=48, suffix_tokens=16)
OBJ = ObjectiveConfig()




@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    corpus_dir = build_corpus(root)
    return corpus_dir, train_tokenizer(corpus_dir, root / "tokenizer.json")


@pytest.fixture(scope="module")
def one_run(inputs, tmp_path_factory):
    corpus_dir, tok = inputs
    run = tmp_path_factory.mktemp("one-run")
    meta = train.train(corpus_dir, tok, run, FAST, FIM, OBJ, log=lambda line: None)
    return run, meta


def checkpoint_tensors(run):
    meta = json.loads((run / "checkpoint" / "state.json").read_text())
    files = meta["files"]["model"] + meta["files"]["optimizer"]
    return shards.load(run / "checkpoint", files)


def test_lr_warms_up_then_decays_to_the_floor():
    cfg = dataclasses.replace(FAST, steps=100, warmup_steps=10, schedule="cosine")
    assert train.lr_at(0, cfg) == pytest.approx(cfg.lr / 10)
    assert train.lr_at(9, cfg) == pytest.approx(cfg.lr)
    assert train.lr_at(100, cfg) == pytest.approx(cfg.lr * cfg.min_lr_ratio)


def test_wsd_holds_the_peak_until_told_to_decay():
    """A campaign of unknown length: the peak until --decay-start, then a linear fall over
    --decay-steps to the floor; with no decay start, the peak for ever."""
    cfg = dataclasses.replace(FAST, steps=10_000, warmup_steps=10, schedule="wsd")
    assert train.lr_at(0, cfg) == pytest.approx(cfg.lr / 10)
    assert train.lr_at(9_999, cfg) == pytest.approx(cfg.lr)
    cfg = dataclasses.replace(cfg, decay_start=1000, decay_steps=100)
    assert train.lr_at(999, cfg) == pytest.approx(cfg.lr)
    assert train.lr_at(1050, cfg) == pytest.approx(cfg.lr * (1 + cfg.min_lr_ratio) / 2)
    assert train.lr_at(1100, cfg) == train.lr_at(5000, cfg) == pytest.approx(cfg.lr * cfg.min_lr_ratio)


def test_bf16_only_where_the_cpu_has_it():
    from dgls.model.loader import cpu_has_native_bf16

    avx2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
    assert not cpu_has_native_bf16(avx2)
    assert cpu_has_native_bf16(avx2.replace("avx2", "avx2 avx512f avx512_bf16"))
    assert cpu_has_native_bf16(avx2.replace("avx2", "avx2 amx_bf16 amx_tile"))
    assert not cpu_has_native_bf16("")
    assert train.uses_bf16("bf16", torch.device("cpu")) and not train.uses_bf16("fp32", torch.device("cpu"))
    assert train.uses_bf16("auto", torch.device("cpu")) == cpu_has_native_bf16()


def test_a_few_steps_lower_the_loss(inputs, tmp_path):
    corpus_dir, tok_path = inputs
    cfg = dataclasses.replace(FAST, steps=30, batch_size=8, warmup_steps=3)
    with_ar = dataclasses.replace(OBJ, ar_weight=1.0)
    train.train(corpus_dir, tok_path, tmp_path, cfg, FIM, with_ar, log=lambda line: None)

    tok = Tokenizer.from_file(tok_path)
    from dgls.model.training import corpus
    data = FimDataset(corpus.read_split(corpus_dir, "train"), tok, bos=2, eos=1, pad=0, fim=FIM,
                      canvas=cfg.canvas())
    batches = [data.batch(8, random.Random(f"held:{i}")) for i in range(3)]

    def loss(model):  # the same batches and noise for both models
        with torch.no_grad():
            return sum(diffusion_loss(model, b, OBJ, torch.Generator().manual_seed(i)).loss.item()
                       for i, b in enumerate(batches)) / len(batches)

    before = DiffusionGemma(dataclasses.replace(from_name("test-tiny"), canvas_length=cfg.block_canvas))
    train.init_weights(before, cfg.seed)
    after = DiffusionGemma(before.cfg)
    weights = checkpoint_tensors(tmp_path)
    with torch.no_grad():
        for name, p in after.named_parameters():
            p.copy_(weights[name].reshape(p.shape))
    assert loss(after) < loss(before) - 0.3, (loss(before), loss(after))
    records = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    log = [r for r in records if "loss" in r]
    assert [r["step"] for r in log] == list(range(3, 31, 3))
    assert all(r["steps_per_s"] > 0 and r["canvas_tokens_per_s"] > 0 for r in log)
    # The next-token loss on the prompt is trained and logged beside the canvas's.
    assert all(r["ar_loss"] > 0 and r["loss"] == pytest.approx(r["canvas_loss"] + r["ar_loss"]) for r in log)
    assert log[-1]["ar_loss"] < log[0]["ar_loss"]
    # The held-out packages are scored at the end of the chunk, with the CPU time spent.
    heldout = [r for r in records if "heldout_canvas_loss" in r]
    assert heldout and heldout[-1]["step"] == 30 and heldout[-1]["cpu_seconds"] > 0
    assert heldout[-1]["heldout_ar_loss"] > 0 and 0 <= heldout[-1]["heldout_middle_acc"] <= 1


def test_chunks_resume_to_exactly_one_runs_result(inputs, one_run, tmp_path, capsys):
    corpus_dir, tok = inputs
    run, meta = one_run
    assert meta["finished"] and meta["step"] == 6
    # Chunks of 4 steps, batches drawn by 2 worker processes: still the same run.
    argv = ["--corpus", str(corpus_dir), "--tokenizer", str(tok), "--out", str(tmp_path), "--chunk-steps", "4",
            "--data-workers", "2"]
    for name, value in [("config", "test-tiny"), ("steps", 6), ("batch-size", 4), ("lr", 3e-3), ("warmup-steps", 2),
                        ("line-canvas", 16), ("block-canvas", 32), ("log-every", 3), ("shard-mib", LIMIT_MIB),
                        ("checkpoint-minutes", 60.0), ("prefix-tokens", 48), ("suffix-tokens", 16), ("precision", "fp32")]:
        argv += [f"--{name}", str(value)]
    assert train.main(argv) == train.EXIT_PAUSED
    assert "paused at step 4 of 6" in capsys.readouterr().err
    assert train.main(argv) == 0
    assert "resumed from" in capsys.readouterr().err
    straight, chunked = checkpoint_tensors(run), checkpoint_tensors(tmp_path)
    assert straight.keys() == chunked.keys()
    for name in straight:
        assert torch.equal(straight[name], chunked[name]), name


def test_checkpoint_and_export_are_safetensors_under_the_limit(one_run):
    run, _ = one_run
    files = [p for d in ("checkpoint", "model") for p in (run / d).iterdir()]
    assert {p.suffix for p in files} <= {".safetensors", ".json", ".md"}
    assert all(p.stat().st_size <= LIMIT_MIB * 2**20 for p in files if p.suffix == ".safetensors")
    stored = json.loads((run / "checkpoint" / "state.json").read_text())
    assert stored["step"] == 6 and stored["train"]["seed"] == FAST.seed
    raw = [k for f in stored["files"]["model"] for k in safe_open(str(run / "checkpoint" / f), "pt").keys()]
    assert "embed#0" in raw and "embed" not in raw  # the embedding was split to stay under the limit
    assert {p.name for p in (run / "model").iterdir()} >= {
        "config.json", "generation_config.json", "tokenizer.json", "MODEL_CARD.md", "model.safetensors.index.json"}


def test_exported_model_loads_and_completes(one_run):
    run, _ = one_run
    engine = Engine.load(run / "model", device="cpu")
    # Trained suffix-first (the default order), and the engine prompts it so.
    assert engine.loaded.family == "fim-spm" and engine.cfg.canvas_length == FAST.block_canvas
    gen = json.loads((run / "model" / "generation_config.json").read_text())
    assert gen["dgls_canvas_lengths"] == {"line": 16, "block": 32} and gen["dgls_fim_order"] == "spm"
    result = engine.infill(InfillRequest("def add(a, b):\n    return ", "\n", path="m.py"),
                           n=2, canvas_length=16, max_steps=3, seed=0)
    assert len(result.candidates) == 2 and all(c.steps >= 1 for c in result.candidates)
    card = (run / "model" / "MODEL_CARD.md").read_text()
    assert "6 of 6 steps" in card and "PSF-2.0" in card


def test_resume_refuses_other_settings(inputs, one_run):
    corpus_dir, tok = inputs
    run, _ = one_run
    with pytest.raises(TrainError, match=r"weight_decay=0.1, now 0.01"):
        train.train(corpus_dir, tok, run, dataclasses.replace(FAST, weight_decay=0.01), FIM, OBJ, log=lambda line: None)
    with pytest.raises(TrainError, match="order"):
        train.train(corpus_dir, tok, run, FAST, dataclasses.replace(FIM, order="psm"), OBJ, log=lambda line: None)
    with pytest.raises(TrainError, match="pad_weight"):
        train.train(corpus_dir, tok, run, FAST, FIM, dataclasses.replace(OBJ, pad_weight=0.5), log=lambda line: None)


def test_windows_and_the_schedule_may_change_between_chunks(inputs, tmp_path):
    """Short windows are cheap early in a campaign; a later chunk may widen them, decay the
    learning rate, decode several canvases per prompt and add the next-token loss, without
    starting over."""
    corpus_dir, tok = inputs
    first = dataclasses.replace(FAST, steps=4)
    train.train(corpus_dir, tok, tmp_path, first, dataclasses.replace(FIM, prefix_tokens=24), OBJ, log=lambda line: None)
    meta = train.train(corpus_dir, tok, tmp_path, dataclasses.replace(first, steps=6, decay_start=4, decay_steps=2),
                       FIM, dataclasses.replace(OBJ, canvas_draws=3, ar_weight=0.5), log=lambda line: None)
    assert meta["step"] == 6 and meta["finished"]
    objective = json.loads((tmp_path / "checkpoint" / "state.json").read_text())["objective"]
    assert objective["canvas_draws"] == 3 and objective["ar_weight"] == 0.5
    lrs = [r["lr"] for r in map(json.loads, (tmp_path / "train_log.jsonl").read_text().splitlines()) if "lr" in r]
    assert lrs[-1] < FAST.lr  # the second chunk decayed


def test_a_compacted_bf16_state_resumes(one_run, inputs, tmp_path):
    """What is kept in git: bf16 weights and moments, cast back to fp32 on resume."""
    from dgls.model.training.train_state import compact

    corpus_dir, tok = inputs
    run, _ = one_run
    kept = compact(run / "checkpoint", tmp_path / "checkpoint")
    assert all(v.dtype == torch.bfloat16 for k, v in checkpoint_tensors(tmp_path).items() if not k.startswith("step/"))
    meta = train.train(corpus_dir, tok, tmp_path, dataclasses.replace(FAST, steps=8), FIM, OBJ, log=lambda line: None)
    assert kept.exists() and meta["step"] == 8
    resumed = checkpoint_tensors(tmp_path)
    assert resumed["embed"].dtype == torch.float32 and torch.isfinite(resumed["embed"]).all()


def test_bad_input_is_one_line(inputs, tmp_path, capsys):
    corpus_dir, _ = inputs
    wrong = tmp_path / "tokenizer.json"
    wrong.write_text("{}")
    assert train.main(["--corpus", str(corpus_dir), "--tokenizer", str(wrong), "--out", str(tmp_path / "r"),
                       "--config", "test-tiny"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unreadable tokenizer" in err
    assert train.main(["--corpus", str(corpus_dir), "--tokenizer", str(wrong), "--out", str(tmp_path / "r"),
                       "--config", "test-tiny", "--canvas-draws", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--canvas-draws must be at least 1" in err
    assert train.main(["--corpus", str(corpus_dir), "--tokenizer", str(wrong), "--out", str(tmp_path / "r"),
                       "--config", "test-tiny", "--ar-fraction", "1.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--ar-fraction must be in (0, 1]" in err


def test_shards_split_large_tensors_and_join_them_again(tmp_path):
    tensors = {"wide": torch.randn(40, 100), "long_row": torch.randn(2, 3000), "scalar": torch.tensor(3.0)}
    where = shards.save(tensors, tmp_path, "t", 8 * 1024, split_large=True)
    assert all(p.stat().st_size <= 8 * 1024 for p in tmp_path.iterdir())
    back = shards.load(tmp_path, set(where.values()))
    for name, t in tensors.items():
        assert torch.equal(back[name].reshape(t.shape), t)
    with pytest.raises(shards.ShardError, match="tensor wide is"):
        shards.save(tensors, tmp_path / "x", "t", 8 * 1024)


def test_sigterm_ends_the_chunk_after_its_step_saved(inputs, tmp_path):
    """A campaign's machine is taken away with SIGTERM: the chunk stops at a step boundary,
    checkpoints and exits 'paused', so nothing but the current step is lost."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    corpus_dir, tok = inputs
    argv = [sys.executable, "-m", "dgls.model.training.train", "--corpus", str(corpus_dir), "--tokenizer", str(tok),
            "--out", str(tmp_path), "--config", "test-tiny", "--steps", "100000", "--batch-size", "4",
            "--line-canvas", "16", "--block-canvas", "32", "--prefix-tokens", "48", "--suffix-tokens", "16",
            "--log-every", "1", "--threads", "1"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    timer = threading.Timer(180, proc.kill)  # a child that never logs a step fails the test, not hangs it
    timer.start()
    for line in proc.stderr:  # wait until it has trained a step
        if line.startswith("step "):
            break
    timer.cancel()
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == train.EXIT_PAUSED, rest
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert 1 <= state["step"] < 100000 and f"paused at step {state['step']}" in rest
