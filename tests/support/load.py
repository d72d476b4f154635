"""Editors typing into one worker: N real `dgls serve` processes, each with two documents of
different shapes, each typing a character and asking for a suggestion in a loop. Every
reply is checked against the document it was asked for (its range and shape differ per
document), every request must be answered, and the RSS of the servers and the worker is
sampled before and after. Used by tests/e2e/test_load.py and bench/bench_load.py."""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field

from .raw_lsp import RawServer

# (text, cursor, expected replace range end, inserted text ends with)
SHAPES = {
    "ret": ("def f(value):\n    return \n# typed: ", (1, 11), (1, 11), ""),
    "call": ("print()\n# typed: ", (0, 6), (0, 7), ")"),
}


@dataclass
class Editor:
    server: RawServer
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    answered: int = 0
    asked: int = 0
    suggestions: int = 0
    wrong: list[str] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    typed: dict[str, int] = field(default_factory=dict)

    def uri(self, shape: str) -> str:
        return f"file:///load/{self.name}/{shape}.py"

    def open(self) -> None:
        for shape, (text, *_rest) in SHAPES.items():
            self.versions[shape], self.typed[shape] = 1, 0
            self.server.notify("textDocument/didOpen", {"textDocument": {
                "uri": self.uri(shape), "languageId": "python", "version": 1, "text": text}})

    def type_and_ask(self, shape: str, answer: str, timeout: float) -> None:
        text, (line, col), end, tail = SHAPES[shape]
        last = text.count("\n")
        column = len(text.rsplit("\n", 1)[-1]) + self.typed[shape]
        self.versions[shape] += 1
        self.typed[shape] += 1
        self.server.notify("textDocument/didChange", {
            "textDocument": {"uri": self.uri(shape), "version": self.versions[shape]},
            "contentChanges": [{"range": {"start": {"line": last, "character": column},
                                          "end": {"line": last, "character": column}}, "text": "x"}]})
        began = time.perf_counter()
        self.asked += 1
        reply = self.server.wait(self.server.request("textDocument/inlineCompletion", {
            "textDocument": {"uri": self.uri(shape)}, "position": {"line": line, "character": col},
            "context": {"triggerKind": 1}}), timeout)
        self.latencies_ms.append((time.perf_counter() - began) * 1e3)
        self.answered += 1
        result = reply.get("result")
        if "result" not in reply:
            self.wrong.append(f"{shape}: error {reply}")
        elif result and result["items"]:
            self.suggestions += 1
            item = result["items"][0]
            rng = item["range"]
            got = ((rng["start"]["line"], rng["start"]["character"]), (rng["end"]["line"], rng["end"]["character"]))
            if (got != ((line, col), end) or not item["insertText"].startswith(answer)
                    or not item["insertText"].endswith(tail)):
                self.wrong.append(f"{shape}: {item}")


def rss_bytes(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class LoadResult:
    editors: int
    seconds: float
    asked: int
    answered: int
    suggestions: int
    wrong: list[str]
    p50_ms: float
    p95_ms: float
    rss_start: int
    rss_end: int


def run_load(servers: list[RawServer], worker_pid, answer: str, seconds: float, timeout: float = 60) -> LoadResult:
    editors = [Editor(s, f"e{i}") for i, s in enumerate(servers)]
    for e in editors:
        e.open()
    errors: list[BaseException] = []

    def typing(e: Editor, stop: float, rounds: int = 0) -> None:
        try:
            i = 0
            while time.monotonic() < stop or i < rounds:
                e.type_and_ask(list(SHAPES)[i % len(SHAPES)], answer, timeout)
                i += 1
        except BaseException as ex:  # noqa: BLE001 - reported below
            errors.append(ex)

    def all_editors(stop: float, rounds: int = 0) -> None:
        threads = [threading.Thread(target=typing, args=(e, stop, rounds)) for e in editors]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if errors:
            raise errors[0]

    all_editors(0, rounds=len(SHAPES))  # one round each before measuring: nothing is cold
    pids = [s.proc.pid for s in servers] + [worker_pid() if callable(worker_pid) else worker_pid]
    rss_start = sum(rss_bytes(p) for p in pids)
    for e in editors:
        e.latencies_ms.clear()
    all_editors(time.monotonic() + seconds)
    latencies = sorted(x for e in editors for x in e.latencies_ms) or [0.0]
    return LoadResult(
        editors=len(editors), seconds=seconds, asked=sum(e.asked for e in editors),
        answered=sum(e.answered for e in editors), suggestions=sum(e.suggestions for e in editors),
        wrong=[w for e in editors for w in e.wrong], p50_ms=statistics.median(latencies),
        p95_ms=latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        rss_start=rss_start, rss_end=sum(rss_bytes(p) for p in pids))
