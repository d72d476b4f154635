"""Shared fixtures: small real checkpoints written once per session."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# One fixed hypothesis profile: derandomized (the same cases every run, in CI and here) and no
# example database; `HYPOTHESIS_PROFILE=explore` draws new cases when hunting for bugs.
_quiet = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
settings.register_profile("ci", derandomize=True, database=None, deadline=None, suppress_health_check=_quiet)
settings.register_profile("explore", derandomize=False, deadline=None, suppress_health_check=_quiet)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory):
    """A dgls-written random-weight checkpoint (test-tiny config, FIM tokenizer)."""
    from dgls.model import random_checkpoint

    return random_checkpoint.write(tmp_path_factory.mktemp("random-fim"), "test-tiny", seed=0, family="fim")


@pytest.fixture(scope="session")
def chat_checkpoint(tmp_path_factory):
    """The same, with a Gemma-chat tokenizer (no FIM tokens), like DiffusionGemma's own."""
    from dgls.model import random_checkpoint

    return random_checkpoint.write(tmp_path_factory.mktemp("random-chat"), "test-tiny", seed=1, family="gemma-chat")


@pytest.fixture(scope="session")
def fixed_checkpoint(request, tmp_path_factory):
    """A real tiny model trained to always answer one word (see tests/support/fixed_model.py).

    Kept in pytest's cache between local runs, keyed by the code that shapes it; a fresh
    clone (CI) trains it once per run."""
    import hashlib
    import shutil
    from pathlib import Path

    from .support.fixed_model import train_fixed_model

    root = Path(__file__).resolve().parent.parent
    sources = sorted((root / "model").glob("*.py")) + sorted((root / "kernels").glob("*.py"))
    sources.append(root / "tests" / "support" / "fixed_model.py")
    key = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    cached = Path(request.config.cache.mkdir(f"fixed-model-{key}"))
    if not (cached / "ANSWER").exists():
        trained = train_fixed_model(tmp_path_factory.mktemp("fixed"))
        shutil.rmtree(cached)
        shutil.copytree(trained, cached)
    return cached


@pytest.fixture
def contract(fixed_checkpoint):
    """A vLLM 0.33 contract server (tests/support/vllm_contract.py) answering with the fixed model."""
    from .support.vllm_contract import ContractServer

    server = ContractServer(fixed_checkpoint)
    server.start()
    yield server
    server.stop()
