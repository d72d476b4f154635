"""The real `dgls` command, run as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest


def dgls(*args, env=None, timeout=120):
    # Never the user's own ~/.config/dgls/config.toml: a test that wants one passes DGLS_CONFIG.
    full_env = {k: v for k, v in os.environ.items() if k != "DGLS_MODEL"} | {"DGLS_CONFIG": os.devnull + ".none"}
    full_env |= env or {}
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
    (["--prefix-file", "/no/such/file.py"], ["cannot read prefix file: /no/such/file.py: no such file"]),
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


def test_no_model_anywhere(tmp_path):
    proc = dgls("infill", "--prefix", "x", env={"DGLS_CONFIG": str(tmp_path / "none.toml")})
    assert_one_line_error(proc, "no model:", "config.toml", "$DGLS_MODEL", "--model DIR")


def test_no_model_as_json_is_json_on_stdout_too(tmp_path):
    path = write(tmp_path, "m.py", SOURCE)
    proc = dgls("complete", f"{path}:2", "--json", env={"DGLS_CONFIG": str(tmp_path / "none.toml")})
    assert proc.returncode == 2 and proc.stderr.startswith("dgls: error: no model:")
    assert json.loads(proc.stdout)["error"].startswith("no model:")


def test_front_end_does_not_import_torch():
    code = "import sys, dgls.cli, dgls.model; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- dgls complete


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


SOURCE = "def add(a, b):\n    return \n\n\ndef scale(xs, k):\n    \n"


def complete_json(*args):
    proc = dgls("complete", *args, "--json")
    assert proc.returncode in (0, 1), proc.stderr
    out = json.loads(proc.stdout)
    assert (proc.returncode == 0) == bool(out["candidates"])  # exit status says whether there is one
    return out


def test_complete_line_hole_end_to_end(random_checkpoint, tmp_path):
    path = write(tmp_path, "m.py", SOURCE)
    out = complete_json(f"{path}:2", "--model", str(random_checkpoint), "--seed", "1", "--max-ms", "5000")
    assert out["hole"] == {"kind": "line", "reason": "finish the line"}
    assert out["canvas_length"] == 32 and out["prompt_tokens"] > 10
    assert len(out["candidates"]) + len(out["rejected"]) >= 1
    for cand in out["candidates"]:
        assert "\n" not in cand["text"]  # a line hole stays on its line
        assert cand["range"] == {"start": {"line": 2, "col": 12}, "end": {"line": 2, "col": 12}}
    for rejected in out["rejected"]:
        assert rejected["why"].startswith(("dropped by", "adds"))
    assert out["timing"]["total_ms"] >= out["timing"]["encode_ms"] + out["timing"]["denoise_ms"] > 0


def test_complete_block_hole_uses_the_block_canvas(random_checkpoint, tmp_path):
    path = write(tmp_path, "m.py", SOURCE)
    out = complete_json(f"{path}:6:5", "--model", str(random_checkpoint), "--seed", "2", "--n", "2")
    assert out["hole"]["kind"] == "block" and out["canvas_length"] == 128
    assert len(out["candidates"]) + len(out["rejected"]) >= 1


def test_complete_mode_flag_forces_the_kind(random_checkpoint, tmp_path):
    path = write(tmp_path, "m.py", SOURCE)
    out = complete_json(f"{path}:2", "--model", str(random_checkpoint), "--mode", "block", "--n", "1")
    assert out["hole"]["kind"] == "block"


def test_complete_budget_stops_the_sampler_early(random_checkpoint, tmp_path):
    path = write(tmp_path, "m.py", SOURCE)
    out = complete_json(f"{path}:2", "--model", str(random_checkpoint), "--max-ms", "1", "--n", "1")
    assert out["stop_reason"] == "callback"


def test_complete_inside_a_string_says_so_without_loading_a_model(tmp_path):
    path = write(tmp_path, "m.py", 'x = "hello world"\n')
    proc = dgls("complete", f"{path}:1:8", "--model", "/no/model/needed")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == "dgls: no suggestion: inside a string"
    as_json = dgls("complete", f"{path}:1:8", "--model", "/no/model/needed", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["no_suggestion"] == "inside a string"


def test_complete_reads_the_model_from_the_config_file(random_checkpoint, tmp_path):
    """The file `dgls serve` reads chooses the CLI's model too (no --model, no $DGLS_MODEL)."""
    path = write(tmp_path, "m.py", SOURCE)
    config = write(tmp_path, "config.toml", f'model = "{random_checkpoint}"\n')
    proc = dgls("complete", f"{path}:2", "--json", "--seed", "1", env={"DGLS_CONFIG": str(config)})
    assert proc.returncode in (0, 1), proc.stderr
    assert json.loads(proc.stdout)["prompt_tokens"] > 10  # the model ran
    flag_wins = dgls("complete", f"{path}:2", "--model", str(tmp_path / "nowhere"), env={"DGLS_CONFIG": str(config)})
    assert_one_line_error(flag_wins, "nowhere")


def test_complete_without_a_suggestion_says_why_on_one_line(random_checkpoint, tmp_path):
    """Random weights write code the filters reject: plain output says how many and why."""
    path = write(tmp_path, "m.py", SOURCE)
    for seed in range(1, 12):
        proc = dgls("complete", f"{path}:6:5", "--model", str(random_checkpoint), "--seed", str(seed), "--n", "2")
        if proc.returncode != 0:
            break
    assert proc.returncode == 1 and proc.stdout == ""
    line, = proc.stderr.strip().splitlines()
    assert line.startswith("dgls: no suggestion: ") and ("candidates rejected: " in line or "wrote nothing" in line)
    as_json = json.loads(dgls("complete", f"{path}:6:5", "--model", str(random_checkpoint), "--seed", str(seed),
                              "--n", "2", "--json").stdout)
    assert as_json["candidates"] == [] and as_json["no_suggestion"] == line.removeprefix("dgls: no suggestion: ")


def test_a_seeded_completion_is_the_same_every_run(random_checkpoint, tmp_path):
    """The latency budget would cut sampling at a different step each run; a seed makes the
    step limit decide. The budget here is far below what the model needs for 48 steps."""
    path = write(tmp_path, "m.py", SOURCE)
    config = write(tmp_path, "config.toml", "lineBudgetMs = 1\n")
    runs = [complete_json(f"{path}:2", "--model", str(random_checkpoint), "--seed", "5", "--n", "2")]
    env = {"DGLS_CONFIG": str(config)}
    tight = [json.loads(dgls("complete", f"{path}:2", "--model", str(random_checkpoint), "--seed", "5", "--n", "2",
                             "--json", env=env).stdout) for _ in range(2)]
    for out in runs + tight:
        assert out["stop_reason"] != "callback"
    texts = [[c["text"] for c in out["candidates"] + out["rejected"]] for out in runs + tight]
    assert texts[0] == texts[1] == texts[2]  # with or without a budget, every run


@pytest.mark.parametrize("name,content,location,fragments", [
    ("gone.py", None, "{path}:1", ["no such file"]),
    ("m.py", SOURCE, "{path}:99", ["has 7 lines; line 99 is out of range"]),
    ("m.py", SOURCE, "{path}:1:80", ["has 14 characters; column 80 is out of range"]),
    ("m.py", SOURCE, "{path}:0", ["count from 1"]),
    ("m.py", SOURCE, "{path}", ["expected FILE:LINE[:COL]"]),
    ("blob.py", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "{path}:1", ["looks binary"]),
    ("latin1.py", "caf\xe9 = 1\n".encode("latin-1"), "{path}:1", ["is not UTF-8 text (invalid byte at offset 3)"]),
    ("notes.txt", "hello\n", "{path}:1", ["no language for .txt"]),
    ("dir.py", "DIR", "{path}:1", ["is a directory"]),
    ("cut.py", "x = '漢'\n".encode()[:-3], "{path}:1", ["is not UTF-8 text"]),  # a sequence cut short
    ("cesu.py", b"x = '\xed\xa0\x80'\n", "{path}:1", ["is not UTF-8 text (invalid byte at offset 5)"]),  # a surrogate
    ("utf16.py", "x = 1\n".encode("utf-16"), "{path}:1", ["looks binary"]),
    ("fifo.py", "FIFO", "{path}:1", ["is not a regular file"]),  # would block forever
])
def test_complete_bad_input(tmp_path, random_checkpoint, name, content, location, fragments):
    path = tmp_path / name
    if content == "DIR":
        path.mkdir()
    elif content == "FIFO":
        os.mkfifo(path)
    elif content is not None:
        write(tmp_path, name, content)
    proc = dgls("complete", location.format(path=path), "--model", str(random_checkpoint))
    assert_one_line_error(proc, *fragments)


@pytest.mark.parametrize("content, fragment", [
    (b"caf\xe9\n", "is not UTF-8 text (invalid byte at offset 3)"),
    (b"x\x00y", "looks binary"),
    ("/dev/zero", "is not a regular file"),
])
def test_infill_prefix_files_are_checked_like_sources(tmp_path, random_checkpoint, content, fragment):
    path = content if isinstance(content, str) else write(tmp_path, "prefix.py", content)
    proc = dgls("infill", "--prefix-file", str(path), "--model", str(random_checkpoint))
    assert_one_line_error(proc, "cannot read prefix file", fragment)


def test_a_huge_config_json_is_refused_unread(tmp_path, random_checkpoint):
    import shutil

    model = shutil.copytree(random_checkpoint, tmp_path / "m")
    (model / "config.json").write_bytes(b" " * (17 * 2**20))
    assert_one_line_error(dgls("infill", "--prefix", "x = ", "--model", str(model)), "config", "over 16 MiB")


def test_complete_refuses_huge_files(tmp_path, random_checkpoint):
    path = write(tmp_path, "big.py", "x = 1\n" * 400_000)
    assert_one_line_error(dgls("complete", f"{path}:1", "--model", str(random_checkpoint)), "over the 2,000,000-byte limit")


def test_complete_uses_a_running_worker(fixed_checkpoint, tmp_path):
    """With a worker serving the model, the CLI asks it instead of loading the model itself,
    finding the worker the editor's settings started (same config file: its dtype too)."""
    import asyncio

    from dgls.worker_client import WorkerClient, WorkerSpec

    runtime = tmp_path / "rt"
    config = write(tmp_path, "config.toml", 'dtype = "float32"\n')
    env = {"DGLS_RUNTIME_DIR": str(runtime), "DGLS_CONFIG": str(config)}
    spec = WorkerSpec(str(fixed_checkpoint), dtype="float32", idle_timeout=60)
    os.environ.update(env)
    try:
        async def start_worker():
            client = WorkerClient(spec)
            while (await client.request("health"))["state"] == "loading":
                await asyncio.sleep(0.05)
            await client.close()  # the worker stays up until idle

        asyncio.run(start_worker())
        path = write(tmp_path, "m.py", SOURCE)
        proc = dgls("complete", f"{path}:2", "--model", str(fixed_checkpoint), "--json", env=env)
        assert proc.returncode in (0, 1), proc.stderr
        # The worker's refusal reaches the user as one line, like any bad input.
        assert_one_line_error(dgls("complete", f"{path}:2", "--model", str(fixed_checkpoint), "--n", "40", env=env),
                              "n=40 is out of range")

        async def served():
            c = WorkerClient(spec, spawn=False)
            health = await c.request("health")
            await c.close()
            return health

        health = asyncio.run(served())
        assert health["served"] == 1
        os.kill(health["pid"], 15)
    finally:
        for key in env:
            os.environ.pop(key, None)


# --- dgls export-hf


def test_export_hf_writes_a_checkpoint_dgls_loads(random_checkpoint, tmp_path):
    out = tmp_path / "hf"
    proc = dgls("export-hf", str(random_checkpoint), str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert "vLLM 0.33 keeps one per layer" in proc.stderr  # random encoder/decoder scalars differ
    assert json.loads((out / "config.json").read_text())["architectures"] == ["DiffusionGemmaForBlockDiffusion"]
    proc = dgls("infill", "--model", str(out), "--prefix", "x = ", "--max-steps", "1", "--json")
    assert proc.returncode in (0, 1), proc.stderr


def test_export_hf_force_replaces_only_checkpoint_files(random_checkpoint, tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "model-00001-of-00002.safetensors").write_bytes(b"stale shard")
    (out / "model.safetensors.index.json").write_text("{}")
    assert_one_line_error(dgls("export-hf", str(random_checkpoint), str(out)), "is not empty; pass --force")
    assert dgls("export-hf", str(random_checkpoint), str(out), "--force").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "notes.txt", "tokenizer.json", "tokenizer_config.json"]
    assert not list(tmp_path.glob(".hf.*"))  # no scratch directory left behind


@pytest.mark.parametrize("model,out,fragments", [
    ("/no/such/dir", "{tmp}/hf", ["neither a directory nor in the local Hugging Face cache"]),
    ("{ckpt}", "{ckpt}", ["is the model's own directory"]),
    ("{ckpt}", "{ckpt}/config.json", ["is a file; give a directory"]),
    ("dgls-tiny", "{tmp}/hf", ["dgls-tiny is not shipped yet"]),
])
def test_export_hf_bad_input_is_one_line(random_checkpoint, tmp_path, model, out, fragments):
    from dgls.model import weights_dir

    if model == "dgls-tiny" and (weights_dir() / "dgls-tiny").exists():
        pytest.skip("dgls-tiny is shipped")
    fill = {"tmp": str(tmp_path), "ckpt": str(random_checkpoint)}
    assert_one_line_error(dgls("export-hf", model.format(**fill), out.format(**fill)), *fragments)
    assert not (tmp_path / "hf").exists()


def test_status_of_a_local_worker_not_yet_started_says_each_thing_once(random_checkpoint, tmp_path):
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    proc = dgls("status", "--model", str(random_checkpoint),
                env={"DGLS_RUNTIME_DIR": str(runtime), "DGLS_CONFIG": str(tmp_path / "none.toml")})
    assert proc.returncode == 0, proc.stderr  # not running is fine: the first request starts it
    keys = [line.split(":", 1)[0] for line in proc.stdout.splitlines()]
    assert "state" in keys and keys.count("model") == 1, proc.stdout
    assert f"model: {random_checkpoint}" in proc.stdout


def test_serve_help_says_where_settings_and_the_model_come_from():
    out = dgls("serve", "--help").stdout
    for fragment in ("initializationOptions", "config.toml", "$DGLS_MODEL", "dgls-tiny"):
        assert fragment in " ".join(out.split()).replace("- ", "-"), fragment  # argparse wraps at hyphens
