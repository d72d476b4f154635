"""Eight real servers (editors) typing into one worker for a bounded time: every request is
answered, each for its own document, and memory stays flat. Correctness only: the timing
is bench/bench_load.py's."""

from __future__ import annotations

from ..support.load import run_load
from ..support.raw_lsp import RawServer
from .conftest import SMALL, worker_pids


def test_eight_editors_typing_into_one_worker(runtime, fixed_checkpoint, answer):
    env = {"DGLS_RUNTIME_DIR": str(runtime), "DGLS_MODEL": str(fixed_checkpoint)}
    servers = [RawServer(env) for _ in range(8)]
    try:
        for s in servers:
            assert "result" in s.initialize(SMALL)
        load = run_load(servers, lambda: worker_pids(runtime)[0], answer, seconds=5)
        (pid,) = worker_pids(runtime)
        assert load.answered == load.asked and load.asked >= 8 * 2
        assert not load.wrong, load.wrong[:3]
        assert load.suggestions >= load.answered // 2  # the fixed model answers nearly always
        assert all(s.alive() for s in servers) and worker_pids(runtime) == [pid]
        # Flat: caches are bounded; allow allocator noise, not growth per request.
        assert load.rss_end < load.rss_start * 1.15 + 40 * 2 ** 20, (load.rss_start, load.rss_end)
    finally:
        for s in servers:
            s.close()
