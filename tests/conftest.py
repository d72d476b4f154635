"""Shared fixtures: small real checkpoints written once per session."""

from __future__ import annotations

import pytest


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
