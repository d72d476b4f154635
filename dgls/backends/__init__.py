"""Backends behind one interface: the local worker (default) or a remote vLLM server.

The editor-facing process imports this without torch; the model only ever loads in the
worker (local) or on the remote GPU box (vllm).
"""

from __future__ import annotations

from ..options import Options
from .base import BackendError, BackendUnavailable, NoModel

__all__ = ["BackendError", "BackendUnavailable", "NoModel", "make_backend", "backend_key"]


def backend_key(options: Options) -> tuple:
    """What identifies a backend: when it changes, the server builds a new one."""
    if options.backend == "vllm":
        from .vllm import VllmBackend

        return VllmBackend.key_for(options)
    from .local import LocalBackend

    return LocalBackend.key_for(options)


def make_backend(options: Options):
    """The configured backend; NoModel when it lacks what it needs."""
    if options.backend == "vllm":
        from .vllm import VllmBackend

        return VllmBackend(options)
    from .local import LocalBackend

    return LocalBackend(options)
