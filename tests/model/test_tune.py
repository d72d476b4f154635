"""`dgls tune`: a real tuning run on a tiny repository and the test-tiny random checkpoint,
then the tuned model loaded by name, by the loader, the CLI and the worker."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dgls.model import adapters, loader, paths
from dgls.model.training import tune

ROOT = Path(__file__).resolve().parents[2]
# Few steps, a learning rate high enough that 3 steps move the adapters visibly, one thread.
FAST = ["--steps", "3", "--lr", "1e-2", "--warmup-steps", "1", "--batch-size", "4", "--threads", "1",
        "--eval-cases", "0", "--log-every-s", "0"]


def make_repo(root: Path) -> Path:
    """Real source: a few of dgls's own modules, plus a file of every kind tune must skip."""
    (root / "src").mkdir(parents=True)
    for name in ("cache.py", "text.py", "rank.py", "files.py", "runtime.py", "wire.py"):
        shutil.copyfile(ROOT / "dgls" / name, root / "src" / name)
    return root


@pytest.fixture(scope="module")
def data_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("xdg-data")
    old = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(home)  # module scope: monkeypatch is per test
    yield home
    if old is None:
        os.environ.pop("XDG_DATA_HOME")
    else:
        os.environ["XDG_DATA_HOME"] = old


@pytest.fixture(scope="module")
def tuned(random_checkpoint, data_home, tmp_path_factory):
    """One tuning run (3 steps, then the evaluation on 4 held-out holes), shared by the tests below."""
    repo = make_repo(tmp_path_factory.mktemp("repo"))
    argv = [str(repo), "--base", str(random_checkpoint), "--name", "tiny-repo", *FAST,
            "--eval-cases", "4", "--eval-max-steps", "2"]
    assert tune.main(argv) == 0
    return paths.models_dir() / "tiny-repo"


def run_cli(*args, env=None, timeout=120, **kw):
    full = {k: v for k, v in os.environ.items() if k != "DGLS_MODEL"} | {"DGLS_CONFIG": os.devnull + ".none"}
    return subprocess.run([sys.executable, "-m", "dgls.cli", *args], capture_output=True, text=True,
                          env=full | (env or {}), timeout=timeout, **kw)


def logits(model, prompt: list[int], canvas: list[int]) -> torch.Tensor:
    cache = model.encode(torch.tensor([prompt]))
    return model.decode(torch.tensor([canvas]), cache)


def test_tuning_writes_a_small_model_loadable_by_name(tuned, random_checkpoint, data_home):
    assert tuned == data_home / "dgls" / "models" / "tiny-repo"
    manifest = json.loads((tuned / adapters.MANIFEST).read_text())
    assert manifest["base"] == {"path": str(random_checkpoint.resolve()), "sha256": adapters.base_digest(random_checkpoint)}
    assert not list(tuned.glob("model*.safetensors")) and not (tuned / "config.json").exists()  # adapters only
    base_bytes = sum(f.stat().st_size for f in random_checkpoint.glob("*.safetensors"))
    assert (tuned / adapters.WEIGHTS).stat().st_size <= 0.10 * base_bytes
    assert paths.resolve("tiny-repo") == tuned
    loaded = loader.load("tiny-repo", dtype="float32", device="cpu")
    assert loaded.path == tuned and loaded.family == "fim"
    state = json.loads((tuned / tune.STATE).read_text())
    assert state["step"] == 3 and state["examples"] == 12 and state["heldout_files"] >= 1


def test_the_evaluation_compares_base_tuned_and_baseline_on_the_same_holes(tuned):
    report = json.loads((tuned / tune.EVAL).read_text())
    assert set(report["summary"]) == {"base", "tuned", "baseline"}
    assert report["cases"] > 0 and all(s["n"] == report["cases"] for s in report["summary"].values())
    for rows in report["rows"].values():
        assert all(r["lines"] == "single-line" for r in rows)
        assert [r["id"] for r in rows] == [r["id"] for r in report["rows"]["base"]]


def test_merged_weights_are_base_plus_adapter_math(tuned, random_checkpoint):
    base, _ = loader.load_network(random_checkpoint, dtype="float32", device="cpu")
    merged, _ = loader.load_network("tiny-repo", dtype="float32", device="cpu")
    prompt, canvas = list(range(5, 40)), list(range(50, 66))
    before, after = logits(base, prompt, canvas), logits(merged, prompt, canvas)
    assert not torch.allclose(before, after, atol=1e-4)  # the adapters changed the model
    # By hand: W + alpha / r * B @ A on every adapted matrix of the base gives the same logits.
    manifest = json.loads((tuned / adapters.MANIFEST).read_text())
    weights = adapters.read_weights(tuned)
    params = dict(base.named_parameters())
    with torch.no_grad():
        for name in {k.rsplit(".", 1)[0] for k in weights}:
            params[name] += manifest["alpha"] / manifest["rank"] * weights[f"{name}.lora_b"] @ weights[f"{name}.lora_a"]
    torch.testing.assert_close(logits(base, prompt, canvas), after, rtol=1e-5, atol=1e-5)
    # And the model as trained (the adapters as a parametrization) computes it too.
    trained, _ = loader.load_network(random_checkpoint, dtype="float32", device="cpu")
    loras = tune.attach(trained, tune.TuneConfig(rank=manifest["rank"], alpha=manifest["alpha"]))
    with torch.no_grad():
        for name, p in tune.named_adapter_params(loras):
            p.copy_(weights[name])
    torch.testing.assert_close(logits(trained.eval(), prompt, canvas), after, rtol=1e-5, atol=1e-5)


def test_resume_continues_the_run_as_if_never_stopped(random_checkpoint, data_home, tmp_path):
    repo = make_repo(tmp_path / "repo")
    common = [str(repo), "--base", str(random_checkpoint), *FAST]
    assert tune.main([*common, "--name", "halves", "--steps", "2"]) == 0
    assert tune.main([*common, "--name", "halves", "--steps", "4"]) == 0
    assert tune.main([*common, "--name", "whole", "--steps", "4"]) == 0
    halves, whole = paths.models_dir() / "halves", paths.models_dir() / "whole"
    assert json.loads((halves / tune.STATE).read_text())["step"] == 4
    a, b = adapters.read_weights(halves), adapters.read_weights(whole)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    # A setting the saved adapters depend on cannot change mid-run.
    assert tune.main([*common, "--name", "halves", "--steps", "5", "--rank", "4"]) == 2


def test_ctrl_c_saves_and_exits_with_one_line(random_checkpoint, data_home, tmp_path):
    repo = make_repo(tmp_path / "repo")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dgls.cli", "tune", str(repo), "--base", str(random_checkpoint), "--name", "stopped",
         "--minutes", "5", "--threads", "1", "--batch-size", "4", "--eval-cases", "0", "--log-every-s", "0"],
        stderr=subprocess.PIPE, text=True, env=os.environ | {"XDG_DATA_HOME": str(data_home)})
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if line.startswith("step 2 ") or not line:
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == tune.EXIT_INTERRUPTED
    assert "Traceback" not in rest
    last = rest.strip().splitlines()[-1]
    assert last.startswith("interrupted: saved stopped at step "), rest
    step = json.loads((data_home / "dgls" / "models" / "stopped" / tune.STATE).read_text())["step"]
    assert step >= 2 and f"step {step};" in last


def test_refusals_are_one_line(random_checkpoint, data_home, tmp_path, capsys):
    empty = tmp_path / "docs"
    empty.mkdir()
    (empty / "README.md").write_text("# nothing to learn\n" * 20)
    (empty / "tiny.py").write_text("x = 1\n")  # too short to learn from
    cases = [
        ([str(empty), "--base", str(random_checkpoint)], "no supported source files"),
        ([str(tmp_path / "absent"), "--base", str(random_checkpoint)], "cannot read it"),
        ([str(make_repo(tmp_path / "repo")), "--base", str(tmp_path / "no-model")], "neither a directory"),
        ([str(tmp_path / "repo"), "--base", str(random_checkpoint), "--name", "../escape"], "--name"),
    ]
    for argv, fragment in cases:
        assert tune.main([*argv, *FAST]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("dgls tune: ") and fragment in err[0], err
    # Never inside PATH: a data directory below the repository is refused.
    inside = run_cli("tune", str(tmp_path / "repo"), "--base", str(random_checkpoint), *FAST,
                     env={"XDG_DATA_HOME": str(tmp_path / "repo" / ".data")})
    assert inside.returncode == 2 and len(inside.stderr.strip().splitlines()) == 1, inside.stderr
    assert "inside" in inside.stderr and not (tmp_path / "repo" / ".data").exists()
    # A tuned model whose base changed since is refused in one line when loaded.
    base = tmp_path / "base"
    shutil.copytree(random_checkpoint, base)
    assert tune.main([str(tmp_path / "repo"), "--base", str(base), "--name", "moved", *FAST]) == 0
    capsys.readouterr()
    (base / "config.json").write_text((base / "config.json").read_text() + " ")
    with pytest.raises(paths.CheckpointError, match="changed since tuning"):
        loader.load("moved")


def test_cli_and_worker_serve_a_tuned_model_by_name(tuned, data_home, tmp_path):
    from dgls.worker_client import WorkerClient, WorkerSpec

    source = tmp_path / "m.py"
    source.write_text("import os\n\n\ndef read(path):\n    with open(path) as f:\n        return \n")
    env = {"XDG_DATA_HOME": str(data_home), "DGLS_RUNTIME_DIR": str(tmp_path / "rt")}
    alone = run_cli("complete", f"{source}:6", "--model", "tiny-repo", "--json", "--seed", "1", env=env)
    assert alone.returncode in (0, 1), alone.stderr  # random weights: a suggestion or a reason
    assert json.loads(alone.stdout)["hole"]["kind"] == "line"
    # The worker resolves the name the same way and serves the merged model unchanged.
    (tmp_path / "config.toml").write_text('dtype = "float32"\n')  # the CLI finds the worker this spec starts
    env["DGLS_CONFIG"] = str(tmp_path / "config.toml")
    spec = WorkerSpec("tiny-repo", dtype="float32", idle_timeout=60)
    os.environ.update(env)
    try:
        async def start():
            client = WorkerClient(spec)
            while (await client.request("health"))["state"] == "loading":
                await asyncio.sleep(0.05)
            await client.close()

        asyncio.run(start())
        proc = run_cli("complete", f"{source}:6", "--model", "tiny-repo", "--json", env=env)
        assert proc.returncode in (0, 1), proc.stderr

        async def health():
            c = WorkerClient(spec, spawn=False)
            h = await c.request("health")
            await c.close()
            return h

        async def info():
            c = WorkerClient(spec, spawn=False)
            i = await c.request("info")
            await c.close()
            return i

        h, i = asyncio.run(health()), asyncio.run(info())
        assert h["served"] == 1 and i["path"] == str(tuned)
        os.kill(h["pid"], signal.SIGTERM)
    finally:
        for key in ("DGLS_RUNTIME_DIR", "DGLS_CONFIG"):
            os.environ.pop(key, None)


def test_help_lists_the_options():
    proc = run_cli("tune", "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: dgls tune")
    for option in ("--base", "--minutes", "--name", "--steps", "--targets"):
        assert option in proc.stdout


def test_a_suffix_first_base_is_tuned_in_its_own_order(data_home, tmp_path):
    """dgls-tiny is trained suffix-first (SPM): the adapters must see the prompts it serves."""
    from dgls.model import random_checkpoint

    base = random_checkpoint.write(tmp_path / "spm", "test-tiny", seed=2, fim_order="spm")
    repo = make_repo(tmp_path / "repo")
    assert tune.main([str(repo), "--base", str(base), "--name", "spm", *FAST, "--steps", "1"]) == 0
    loaded = loader.load("spm", dtype="float32", device="cpu")
    assert loaded.family == "fim-spm"
