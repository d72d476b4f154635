"""The real `dgls` command, run as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest


def dgls(*args, env=None, timeout=120):
    full_env = {k: v for k, v in os.environ.items() if k != "DGLS_MODEL"} | (env or {})
    return subprocess.run([sys.executable, "-m", "dgls.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dgls: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_infill_json_reports_candidates_and_timing(random_checkpoint):
    proc = dgls("infill", "--model", str(random_checkpoint), "--prefix", "def add(a, b):\n    return ",
                "--suffix", "\n", "--n", "3", "--max-steps", "3", "--seed", "7", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["candidates"]) == 3
    assert all(c["steps"] == 3 for c in out["candidates"])
    assert out["canvas_length"] == 16 and out["denoise_ms"] > 0 and out["stop_reason"] == "max_steps"


def test_same_seed_same_output(random_checkpoint):
    runs = [dgls("infill", "--model", str(random_checkpoint), "--prefix", "x = ", "--max-steps", "2", "--seed", "3")
            for _ in range(2)]
    assert runs[0].stdout == runs[1].stdout and runs[0].returncode in (0, 1)


def test_prefix_and_suffix_from_files(random_checkpoint, tmp_path):
    (tmp_path / "pre.py").write_text("import os\n")
    proc = dgls("infill", "--model", str(random_checkpoint), "--prefix-file", str(tmp_path / "pre.py"),
                "--suffix-file", str(tmp_path / "pre.py"), "--max-steps", "1", "--json")
    assert proc.returncode in (0, 1) and json.loads(proc.stdout)["prompt_tokens"] > 4


def test_model_from_local_hugging_face_cache(random_checkpoint, tmp_path):
    """A model id resolves offline through the HF cache layout; nothing is downloaded."""
    repo = tmp_path / "hub" / "models--acme--tiny-dg"
    snapshot = repo / "snapshots" / "0123456789abcdef"
    shutil.copytree(random_checkpoint, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    proc = dgls("infill", "--model", "acme/tiny-dg", "--prefix", "x", "--max-steps", "1", "--json",
                env={"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode in (0, 1), proc.stderr
    assert json.loads(proc.stdout)["model"] == str(snapshot)


@pytest.mark.parametrize("args,fragments", [
    (["--model", "/no/such/dir"], ["neither a directory nor in the local Hugging Face cache"]),
    (["--model", "acme/not-cached"], ["neither a directory nor in the local Hugging Face cache"]),
    (["--prefix-file", "/no/such/file.py"], ["cannot read prefix file /no/such/file.py"]),
    (["--n", "0"], ["--n must be at least 1"]),
])
def test_bad_input_is_one_line_and_exit_2(random_checkpoint, args, fragments):
    base = ["infill", "--prefix", "x"]
    if "--model" not in args:
        base += ["--model", str(random_checkpoint)]
    assert_one_line_error(dgls(*base, *args), *fragments)


def test_corrupt_weights_exit_2(random_checkpoint, tmp_path):
    broken = shutil.copytree(random_checkpoint, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"garbage")
    assert_one_line_error(dgls("infill", "--model", str(broken), "--prefix", "x"), "corrupt safetensors file")


def test_no_model_anywhere():
    assert_one_line_error(dgls("infill", "--prefix", "x"), "pass --model DIR or set DGLS_MODEL")


def test_front_end_does_not_import_torch():
    code = "import sys, dgls.cli, dgls.model; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
