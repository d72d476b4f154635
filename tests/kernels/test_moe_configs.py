"""Tuned block configs: file names, nearest-M lookup, the fallback warning, and the tuning
script that writes them (bench/tune_moe.py), run end to end on a tiny shape."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path

import pytest
import torch

from dgls.kernels import moe_configs
from dgls.kernels.moe_configs import CONFIG_DIR, MoeBlockConfig, default_config, get_config, write_configs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fresh_cache():
    moe_configs.read_configs.cache_clear()
    yield
    moe_configs.read_configs.cache_clear()


@pytest.fixture
def tuner(monkeypatch):
    """bench/tune_moe.py as a module (bench/ is no package)."""
    spec = importlib.util.spec_from_file_location("tune_moe", ROOT / "bench" / "tune_moe.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "tune_moe", module)  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_file_name_is_the_key():
    assert moe_configs.file_name(8, 256, "cpu") == "E=8,N=256,device_name=cpu.json"
    assert moe_configs.device_name("cpu") == "cpu"


def test_write_then_read_nearest_m(tmp_path):
    small = MoeBlockConfig(16, 32, 64, 1)
    mid = MoeBlockConfig(32, 64, 64, 8, num_warps=8, num_stages=3)
    big = MoeBlockConfig(64, 128, 32, 16)
    path = write_configs({64: mid, 1: small, 1024: big}, 128, 704, "NVIDIA_H100_80GB_HBM3", tmp_path)
    assert path.name == "E=128,N=704,device_name=NVIDIA_H100_80GB_HBM3.json"
    raw = json.loads(path.read_text())
    assert list(raw) == ["1", "64", "1024"]  # M ascending
    assert raw["64"] == {"BLOCK_SIZE_M": 32, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 8,
                         "num_warps": 8, "num_stages": 3}
    lookup = lambda T: get_config(T, 128, 704, "NVIDIA_H100_80GB_HBM3", tmp_path)  # noqa: E731
    assert lookup(1) == small and lookup(20) == small and lookup(40) == mid
    assert lookup(544) == mid  # equidistant from 64 and 1024: the smaller M
    assert lookup(545) == big and lookup(100_000) == big


def test_vllm_files_read_the_same(tmp_path):
    # vLLM's tuned files carry the same keys (and sometimes fewer): they drop in as they are.
    (tmp_path / "E=8,N=256,device_name=X.json").write_text(
        '{"1": {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 1}}')
    assert get_config(3, 8, 256, "X", tmp_path) == MoeBlockConfig(16, 32, 64, 1)


def test_missing_file_falls_back_with_one_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="dgls.kernels.moe_configs"):
        for T in (1, 5, 500):
            assert get_config(T, 4, 48, "cpu", tmp_path) == default_config(T, 4)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["no tuned MoE config E=4,N=48,device_name=cpu.json; using the default block sizes "
                        "(run bench/tune_moe.py)"]


@pytest.mark.parametrize("body", ['{"16": {"BLOCK_SIZE_M": 24, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 32}}',
                                  '{"16": {"BLOCK_SIZE_Q": 16}}', "not json", "{}", '{"x": {}}', "[1, 2]"])
def test_unusable_file_falls_back_with_a_warning(tmp_path, caplog, body):
    (tmp_path / "E=4,N=48,device_name=cpu.json").write_text(body)
    with caplog.at_level(logging.WARNING, logger="dgls.kernels.moe_configs"):
        assert get_config(16, 4, 48, "cpu", tmp_path) == default_config(16, 4)
    assert len(caplog.records) == 1 and "E=4,N=48,device_name=cpu.json" in caplog.records[0].getMessage()


def test_block_sizes_are_checked():
    with pytest.raises(ValueError, match="block_m must be a power of two >= 16, got 8"):
        MoeBlockConfig(8, 32, 32)
    with pytest.raises(ValueError, match="block_n must be a power of two >= 16, got 48"):
        MoeBlockConfig(16, 48, 32)


def test_shipped_files_parse(caplog):
    files = sorted(CONFIG_DIR.glob("*.json"))
    assert files, "kernels/configs ships at least the interpreter's configs"
    with caplog.at_level(logging.WARNING, logger="dgls.kernels.moe_configs"):
        for path in files:
            key = dict(part.split("=", 1) for part in path.stem.split(","))
            assert set(key) == {"E", "N", "device_name"}
            assert moe_configs.read_configs(int(key["E"]), int(key["N"]), key["device_name"]) is not None
    assert not caplog.records


def test_tuner_search_space_is_valid(tuner):
    assert len(tuner.search_space(quick=True)) == 8
    full = tuner.search_space(quick=False)
    assert len(full) == len(set(full)) > 100
    assert tuner.expert_shape("diffusiongemma-26b-a4b") == tuner.ExpertShape(hidden=2816, experts=128, width=704, top_k=8)


def test_tuner_picks_the_fastest_and_writes_a_file_the_kernel_reads(tuner, tmp_path, device):
    pytest.importorskip("triton")
    shape = tuner.ExpertShape(hidden=24, experts=3, width=20, top_k=2)
    space = [MoeBlockConfig(16, 16, 16, 1), MoeBlockConfig(32, 32, 16, 2)]
    fast = space[1]
    calls = []

    def fake_timer(fn):  # runs the kernel once, but reports the second config as the faster
        fn()
        calls.append(1)
        return 1.0 if len(calls) % 4 == 2 else 5.0

    lines = []
    best = tuner.tune([3, 40], shape, torch.float32, torch.device(device), space, fake_timer, log=lines.append)
    assert best == {3: fast, 40: fast}
    assert len(lines) == 2 and lines[0].startswith("T=    3  best    1.000 ms  default    5.000 ms (5.00x)")
    path = write_configs(best, shape.experts, shape.width, moe_configs.device_name(device), tmp_path)
    assert get_config(10, 3, 20, moe_configs.device_name(device), tmp_path) == fast
    assert path.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_tuner_refuses_without_cuda(tuner, capsys):
    assert tuner.main(["--model", "test-tiny"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
