"""What every backend raises, and what the language server and the CLI rely on.

A backend turns a prepared request into an `InfillResult` (or None when cancelled):
`LocalBackend` through the worker on this machine, `VllmBackend` through a vLLM server.
Both take the same post-processing and ranking afterwards (dgls/complete.py `finish`).
Errors are one line each, fit for the editor's log.
"""

from __future__ import annotations


class BackendError(RuntimeError):
    """The request failed; the message is one line. No suggestion, the server goes on."""


class BackendUnavailable(BackendError):
    """The backend cannot be reached or is failing (connection, timeout, 5xx, a dead
    worker): the kind of failure a fallback to the local worker is for."""


class NoModel(BackendError):
    """Nothing is configured to run: no model, or no remote URL."""
