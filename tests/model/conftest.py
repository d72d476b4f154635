"""Model tests load dgls checkpoints into transformers, the reference."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def quiet_transformers():
    """transformers logs a load report listing the vision tower as missing: dgls's checkpoints
    are text only by design, so the report is expected noise in every parity test."""
    try:
        from transformers.utils import logging
    except ImportError:
        yield
        return
    before = logging.get_verbosity()
    logging.set_verbosity_error()
    yield
    logging.set_verbosity(before)
