"""editors/vscode: the manifest against dgls/options.py, typecheck + lint + .vsix packaging
with the project's npm tool chain, and the extension's wiring against the real server."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile

import pytest

from .conftest import SMALL
from .editors import EDITORS, dgls_command, server_env
from .vscode_manifest import EXTENSION_ONLY, MANIFEST, properties

VSCODE = EDITORS / "vscode"
needs_npm = pytest.mark.skipif(
    shutil.which("node") is None or not (VSCODE / "node_modules" / ".bin" / "esbuild").exists(),
    reason="node or editors/vscode/node_modules missing: run `npm ci` in editors/vscode (.ci/run does)")


# The e2e settings as a VS Code user would write them (there, the budgets are two settings).
SETTINGS = {**{k: v for k, v in SMALL.items() if k != "maxLatencyMs"},
            "lineBudgetMs": SMALL["maxLatencyMs"], "blockBudgetMs": SMALL["maxLatencyMs"]}


def npm(*args: str, env=None, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run(["npm", "run", "--silent", *args], cwd=VSCODE, capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def test_manifest_settings_are_the_servers_options():
    manifest = json.loads(MANIFEST.read_text())
    contributed = manifest["contributes"]["configuration"]["properties"]
    assert contributed == properties(), "regenerate with: python -m tests.e2e.vscode_manifest"
    assert {"dgls.model", "dgls.debounceMs", "dgls.lineBudgetMs", "dgls.candidatesInvoked"} <= contributed.keys()
    # The extension's own keys, never sent to the server, are the ones src/settings.ts skips.
    source = (VSCODE / "src" / "settings.ts").read_text()
    assert all(f'"{key.removeprefix("dgls.")}"' in source for key in EXTENSION_ONLY)


def test_lockfile_is_committed_and_matches_the_manifest():
    lock = json.loads((VSCODE / "package-lock.json").read_text())
    manifest = json.loads(MANIFEST.read_text())
    root = lock["packages"][""]
    assert root["dependencies"] == manifest["dependencies"]
    assert root["devDependencies"] == manifest["devDependencies"]
    # 10 is the first vscode-languageclient with inline completion.
    client = lock["packages"]["node_modules/vscode-languageclient"]
    assert int(client["version"].split(".")[0]) >= 10
    # The wiring test's protocol library is the very copy the client runs on, not a second one.
    protocol = lock["packages"]["node_modules/vscode-languageserver-protocol"]
    assert client["dependencies"]["vscode-languageserver-protocol"] == protocol["version"]
    assert protocol["dependencies"]["vscode-jsonrpc"] == lock["packages"]["node_modules/vscode-jsonrpc"]["version"]
    assert not [p for p in lock["packages"] if p.count("node_modules/") > 1 and p.endswith(
        ("/vscode-languageserver-protocol", "/vscode-jsonrpc"))]


@needs_npm
def test_extension_typechecks_and_lints():
    for script in ("typecheck", "lint"):
        done = npm(script)
        assert done.returncode == 0, f"npm run {script}:\n{done.stdout}{done.stderr}"


@needs_npm
def test_extension_packages_to_a_vsix():
    vsix = VSCODE / "dgls.vsix"
    vsix.unlink(missing_ok=True)
    done = npm("package")
    assert done.returncode == 0, done.stdout + done.stderr
    names = zipfile.ZipFile(vsix).namelist()
    assert {"extension/package.json", "extension/dist/extension.js", "extension/LICENSE.txt"} <= set(names)
    assert not [n for n in names if "node_modules" in n or n.startswith("extension/src/")]
    # Bundled: the one module the extension may leave to its host is `vscode`.
    bundle = zipfile.ZipFile(vsix).read("extension/dist/extension.js").decode()
    assert 'require("vscode")' in bundle and 'require("vscode-languageclient' not in bundle


@needs_npm
def test_extension_wiring_against_the_real_server(fixed_checkpoint, runtime, answer):
    """VS Code's JSON-RPC libraries and capabilities, the extension's settings and status
    code (test/wiring.ts), the real `dgls serve` and worker over stdio."""
    built = npm("build:test")
    assert built.returncode == 0, built.stdout + built.stderr
    env = {**server_env(runtime, fixed_checkpoint), "DGLS_COMMAND": dgls_command(),
           "DGLS_SETTINGS": json.dumps(SETTINGS), "DGLS_ANSWER": answer}
    done = subprocess.run(["node", "out/wiring.js"], cwd=VSCODE, capture_output=True, text=True, env=env,
                          timeout=180, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: ")
