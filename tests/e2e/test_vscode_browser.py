"""editors/vscode inside a real VS Code: code-server (VS Code 1.139 for the browser) with the
built .vsix installed, driven through headless Chromium by Playwright, against the real
`dgls serve`, its worker and the fixed-answer model. Every check is on what a user sees on
screen (ghost text, the status bar, a notification) or gets in the file after saving.

Needs what tests/e2e/vscode_browser_install.sh installs; skips, naming it, without. The
tests share one editor session and run in file order: no model at first, then the model set
through the UI, then typing. Screenshots go to $DGLS_SCREENSHOTS (default
editors/vscode/out/screenshots); docs/vscode-ghost-text.png is a copy of ghost-text.png.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from ..support.fixed_model import answer_of
from .conftest import worker_pids
from .editors import ROOT, dgls_command
from .test_vscode_extension import SETTINGS, VSCODE, needs_npm, npm

INSTALL = "tests/e2e/vscode_browser_install.sh"
_script = (ROOT / INSTALL).read_text()  # the versions live in the install script only
NODE_VERSION = re.search(r"^NODE_VERSION=(\S+)", _script, re.M).group(1)
CODE_SERVER_VERSION = re.search(r"^CODE_SERVER_VERSION=(\S+)", _script, re.M).group(1)
CACHE = Path(os.environ.get("DGLS_VSCODE_E2E", Path.home() / ".cache" / "dgls-vscode-e2e"))
NODE_BIN = CACHE / f"node-{NODE_VERSION}" / "node_modules" / ".bin"
CODE_SERVER = CACHE / f"code-server-{CODE_SERVER_VERSION}" / "node_modules" / ".bin" / "code-server"
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("DGLS_SCREENSHOTS", VSCODE / "out" / "screenshots"))


def _missing() -> list[str]:
    missing = [str(p) for p in (NODE_BIN / "node", CODE_SERVER, CHROMIUM) if not p.exists()]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (Python)")
    return missing


# .ci/run sets DGLS_VSCODE_E2E_REQUIRED after installing: there a skip would hide a failure.
if _missing() and os.environ.get("DGLS_VSCODE_E2E_REQUIRED"):
    raise RuntimeError(f"{INSTALL} ran, yet missing: {', '.join(_missing())}")
pytestmark = [needs_npm, pytest.mark.skipif(
    bool(_missing()), reason=f"run {INSTALL} (missing: {', '.join(_missing())})")]

# The lines the tests type after; the fixed model writes its one word at each cursor.
PY = "class Greeter:\n    def me(self):\n        "
EMOJI = 'x = f("漢字🎉",)\n'  # the cursor goes before `)`: UTF-16 columns past a surrogate pair
TS = "function me(self: number): number {\n  "
# The session's settings; dgls.model comes later, through the UI. code-server's window is a
# remote one: machine-scoped settings (dgls.server.command, dgls.model) apply from the remote
# ("Machine") settings. From the user settings.json VS Code drops them once that file changes
# (the extension's inspect("model") came back with no value; tried 2026-12-01).
MACHINE = {"dgls.server.command": dgls_command()}
USER = {
    **{f"dgls.{key}": value for key, value in SETTINGS.items()},
    "dgls.workerIdleS": 20,  # the worker outlives the editor this long (it is also stopped below)
    "dgls.trace.server": "messages",
    "editor.inlineSuggest.enabled": True,
    "files.autoSave": "off",  # code-server's default saves as we type; the test saves itself
    "security.workspace.trust.enabled": False,
    "workbench.startupEditor": "none",
    "telemetry.telemetryLevel": "off",
    "workbench.secondarySideBar.defaultVisibility": "hidden",  # the chat view, room for the editor
    "chat.disableAIFeatures": True,
}
WAIT = 60_000  # ms: a cold worker loads the model on a CPU shared with other work (~3 s here)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def session(tmp_path_factory, fixed_checkpoint):
    """code-server with the freshly built .vsix, a workspace, and a Chromium page on it."""
    from playwright.sync_api import sync_playwright

    built = npm("package")
    assert built.returncode == 0, built.stdout + built.stderr
    base = tmp_path_factory.mktemp("code-server")
    data, extensions, workspace, runtime = (base / n for n in ("data", "extensions", "workspace", "rt"))
    workspace.mkdir()
    runtime.mkdir(mode=0o700)
    (workspace / "app.py").write_text(PY)
    (workspace / "emoji.py").write_text(EMOJI)
    (workspace / "app.ts").write_text(TS)
    (data / "User").mkdir(parents=True)
    (data / "User" / "settings.json").write_text(json.dumps(USER, indent=2))
    (data / "Machine").mkdir()
    (data / "Machine" / "settings.json").write_text(json.dumps(MACHINE, indent=2))
    # No DGLS_MODEL and an empty config home: the server starts with no model at all. No
    # `dgls` on PATH either: the extension starts the one dgls.server.command names.
    env = {k: v for k, v in os.environ.items() if k != "DGLS_MODEL"}
    path = [p for p in env["PATH"].split(os.pathsep) if p != str(Path(dgls_command()).parent)]
    env.update(PATH=os.pathsep.join([str(NODE_BIN), *path]), DGLS_RUNTIME_DIR=str(runtime),
               XDG_CONFIG_HOME=str(base / "config"), XDG_DATA_HOME=str(base / "share"), HF_HUB_OFFLINE="1")
    common = ["--user-data-dir", str(data), "--extensions-dir", str(extensions)]
    installed = subprocess.run([str(CODE_SERVER), *common, "--install-extension", str(VSCODE / "dgls.vsix")],
                               env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    port = free_port()
    log = (base / "code-server.log").open("w")
    # Its own process group: the extension host and `dgls serve` go with it at the end.
    editor = subprocess.Popen([str(CODE_SERVER), *common, "--auth", "none", "--bind-addr", f"127.0.0.1:{port}",
                               "--disable-telemetry", "--disable-update-check", str(workspace)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}/healthz", timeout=2)
                break
            assert editor.poll() is None and time.monotonic() < deadline, (base / "code-server.log").read_text()
            time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 640})
            page.goto(f"{url}/?folder={workspace}")
            page.locator(".monaco-workbench").wait_for(timeout=WAIT)
            yield Session(page, workspace, runtime, editor, fixed_checkpoint)
            browser.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(editor.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            editor.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(editor.pid, signal.SIGKILL)
        for pid in worker_pids(runtime):  # the worker is detached from the editor by design
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        log.close()


@pytest.fixture(autouse=True)
def screenshot_on_failure(request, session):
    """A failed test leaves the window as it was in SHOTS/failed-<test>.png."""
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed:
        SHOTS.mkdir(parents=True, exist_ok=True)
        session.page.screenshot(path=SHOTS / f"failed-{request.node.name}.png")


class Session:
    def __init__(self, page, workspace: Path, runtime: Path, editor: subprocess.Popen, model: Path):
        self.page, self.workspace, self.runtime, self.editor, self.model = page, workspace, runtime, editor, model
        self.answer = answer_of(model)  # the one word the fixed model writes

    def command(self, title: str) -> None:
        """Run a command from the command palette, as a user would."""
        self.page.keyboard.press("F1")
        box = self.page.locator(".quick-input-widget input")
        box.fill(f">{title}")
        self.page.locator(".quick-input-list .monaco-list-row", has_text=title).first.click()

    def open(self, name: str) -> None:
        """Quick Open (Ctrl+P) the file, then put the cursor at its end."""
        self.page.keyboard.press("Control+p")
        self.page.locator(".quick-input-widget input").fill(name)
        self.page.locator(".quick-input-list .monaco-list-row", has_text=name).first.click()
        tab = self.page.locator(".tab.active", has_text=name)
        tab.wait_for()
        self.page.locator(".editor-instance .monaco-editor .view-lines").first.click()
        self.page.keyboard.press("Control+End")

    def ghost(self):
        """The ghost text on screen (VS Code's inline-suggestion decoration)."""
        return self.page.locator(".monaco-editor .ghost-text-decoration")

    def line_with_ghost(self) -> str:
        """The screen line showing the ghost text, as it reads (ghost text included)."""
        line = self.page.locator(".monaco-editor .view-line", has=self.page.locator(".ghost-text-decoration"))
        return line.first.inner_text().replace("\u00a0", " ")

    def status(self):
        return self.page.locator("footer .statusbar-item", has_text=re.compile(r"\bdgls\b")).first

    def save(self, name: str) -> str:
        self.page.keyboard.press("Control+s")
        self.page.locator(".tab.active.dirty").wait_for(state="detached")
        return (self.workspace / name).read_text()

    def shot(self, name: str) -> None:
        """A PNG of the window (1100x640, ~35 KB), status bar included."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=SHOTS / f"{name}.png")

    def server_pids(self) -> list[int]:
        """The `dgls serve` processes of this session (they carry its runtime directory)."""
        pids = []
        for proc in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                environ = (proc / "environ").read_bytes().split(b"\0")
                if b"serve" in argv and f"DGLS_RUNTIME_DIR={self.runtime}".encode() in environ:
                    pids.append(int(proc.name))
        return pids


def test_no_model_is_said_by_the_extension(session):
    from playwright.sync_api import expect

    session.open("app.py")  # activates the extension (onLanguage:python)
    session.page.keyboard.type("return ")
    toast = session.page.locator(".notification-toast", has_text="dgls has no model configured")
    expect(toast).to_be_visible(timeout=WAIT)
    expect(toast.get_by_role("button", name="Open Settings")).to_be_visible()
    expect(session.status()).to_have_text(re.compile(r"dgls: no model"), timeout=WAIT)
    expect(session.ghost()).to_have_count(0)
    toast.locator(".codicon-notifications-clear").click()


def test_the_model_set_in_the_settings_ui_reaches_the_server(session):
    """dgls.model typed into the remote settings.json (opened from the command palette, where
    code-server's machine-scoped settings go) and saved: the running server gets it, and
    ghost text appears."""
    from playwright.sync_api import expect

    page = session.page
    session.command("Preferences: Open Remote Settings (JSON)")
    text = page.locator(".monaco-editor .view-lines", has_text="dgls.server.command")
    text.click()
    # After the last setting; insert_text is a paste (the editor's auto-closing quotes would
    # double typed ones).
    page.keyboard.press("Control+End")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("End")
    page.keyboard.insert_text(f',\n  "dgls.model": {json.dumps(str(session.model))}')
    page.keyboard.press("Control+s")
    saved = session.workspace.parent / "data" / "Machine" / "settings.json"
    deadline = time.monotonic() + 20
    while "dgls.model" not in saved.read_text():
        assert time.monotonic() < deadline, saved.read_text()
        time.sleep(0.2)
    assert json.loads(saved.read_text())["dgls.model"] == str(session.model)
    page.keyboard.press("Control+w")
    session.open("app.py")
    page.keyboard.press("Backspace")  # a keystroke: VS Code asks for a suggestion again
    page.keyboard.type(" ")
    expect(session.ghost()).to_have_text(session.answer, timeout=WAIT)


def test_ghost_text_at_the_cursor_tab_accepts_it_status_shows_latency(session):
    from playwright.sync_api import expect

    page = session.page
    # The file from the previous test: `        return ` with the ghost text shown.
    expect(session.ghost()).to_have_text(session.answer, timeout=WAIT)
    assert session.line_with_ghost() == f"        return {session.answer}"
    expect(session.status()).to_have_text(re.compile(r"dgls \d+ ms"), timeout=WAIT)
    session.shot("ghost-text")
    page.keyboard.press("Tab")
    expect(session.ghost()).to_have_count(0)
    session.shot("accepted")
    assert session.save("app.py") == f"{PY}return {session.answer}"


def test_cjk_and_emoji_line_utf16_columns(session):
    from playwright.sync_api import expect

    page = session.page
    session.open("emoji.py")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("End")
    page.keyboard.press("ArrowLeft")  # before `)`
    page.keyboard.type(" ")
    expect(session.ghost()).to_have_text(session.answer, timeout=WAIT)
    assert session.line_with_ghost() == f'x = f("漢字🎉", {session.answer})'
    page.keyboard.press("Tab")
    assert session.save("emoji.py") == f'x = f("漢字🎉", {session.answer})\n'


def test_typescript_file(session):
    from playwright.sync_api import expect

    page = session.page
    session.open("app.ts")
    page.keyboard.type("return ")
    expect(session.ghost()).to_have_text(session.answer, timeout=WAIT)
    assert session.line_with_ghost() == f"  return {session.answer}"
    page.keyboard.press("Tab")
    assert session.save("app.ts") == f"{TS}return {session.answer}"


def test_trace_shows_in_the_dgls_output_channel(session):
    """dgls.trace.server is on in the user settings: the LSP traffic is in the dgls channel
    that the status item's "Show log" opens."""
    from playwright.sync_api import expect

    page = session.page
    session.command("dgls: Show status")
    toast = page.locator(".notification-toast", has_text="model:")
    toast.get_by_role("button", name="Show log").click()
    output = page.locator(".output-view, [id='workbench.panel.output']").first
    # \s: the editor shows spaces as no-break spaces.
    expect(output).to_contain_text(re.compile(r"\[trace\]\sSending\srequest\s'textDocument/inlineCompletion"),
                                   timeout=WAIT)


def test_a_crashed_server_is_restarted_and_ghost_text_returns(session):
    from playwright.sync_api import expect

    page = session.page
    first = session.server_pids()
    assert len(first) == 1, first
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while not (again := session.server_pids()) or again == first:
        assert time.monotonic() < deadline, "the extension did not start the server again"
        time.sleep(0.5)
    # The restarted server's first status: no latency yet. Keystrokes before it reach no
    # server (the client is still starting it), and a user would see that too.
    expect(session.status()).to_have_text(re.compile(r"^\s*dgls\s*$"), timeout=WAIT)
    session.open("app.py")  # `        return <answer>`, saved: take the word back, retype the space
    for _ in f"{session.answer} ":
        page.keyboard.press("Backspace")
    page.keyboard.type(" ")
    expect(session.ghost()).to_have_text(session.answer, timeout=WAIT)
    assert session.line_with_ghost() == f"        return {session.answer}"
    expect(session.status()).to_have_text(re.compile(r"dgls \d+ ms"), timeout=WAIT)
    assert session.editor.poll() is None
