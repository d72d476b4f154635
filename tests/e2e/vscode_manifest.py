"""The VS Code extension's settings, derived from dgls/options.py (their one home).

`editors/vscode/package.json` contributes these; tests/e2e/test_vscode_extension.py holds
the two equal. After changing an option, regenerate with:

    python -m tests.e2e.vscode_manifest
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

from dgls.options import _POSITIVE, DEFAULTS, DTYPES, LANGUAGES, Options, _camel

# VS Code ignores a workspace's value for a setting of this scope (options.py `machine`).
MACHINE = {"scope": "machine"}

MANIFEST = Path(__file__).resolve().parents[2] / "editors" / "vscode" / "package.json"

# Settings of the extension itself, never sent to the server (it would call them unknown).
EXTENSION_ONLY = {
    "dgls.enable": {"type": "boolean", "default": True,
                    "markdownDescription": "start `dgls serve` and show its suggestions (command **dgls: Toggle**)"},
    # A workspace must not choose the command VS Code runs.
    "dgls.server.command": {"type": "string", "default": "dgls", **MACHINE,
                            "markdownDescription": "the `dgls` executable (a full path when it is not on `PATH`, "
                                                   "e.g. a virtual environment's `bin/dgls`); started as `dgls serve`"},
    "dgls.trace.server": {"type": "string", "enum": ["off", "messages", "verbose"], "default": "off",
                          "markdownDescription": "log the LSP traffic in the **dgls** output channel"},
}


def server_properties() -> dict[str, dict]:
    """One VS Code setting per option, with the option's default and help text."""
    hints = typing.get_type_hints(Options)
    props = {}
    for order, f in enumerate(dataclasses.fields(Options)):
        default, hint = getattr(DEFAULTS, f.name), hints[f.name]
        if f.name == "dtype":
            schema = {"type": "string", "enum": list(DTYPES)}
        elif f.name == "enabled_languages":
            schema = {"type": "array", "items": {"type": "string", "enum": list(LANGUAGES)}, "uniqueItems": True}
            default = list(default)
        elif f.metadata.get("choices"):
            schema = {"type": "string", "enum": list(f.metadata["choices"])}
        elif f.name == "remote_api_key_env":
            schema = {"type": "string", "pattern": "^DGLS_[A-Za-z0-9_]+$"}
        elif hint is bool:
            schema = {"type": "boolean"}
        elif hint == (str | None):
            schema = {"type": ["string", "null"]}
        elif hint is int:
            schema = {"type": "integer", "minimum": 0 if f.name in _POSITIVE else 1}
        elif hint is float:
            schema = {"type": "number", "exclusiveMinimum": 0}
        else:
            raise TypeError(f"no VS Code schema for option {f.name}: {hint}")
        if f.metadata.get("machine"):
            schema.update(MACHINE)
        props[f"dgls.{_camel(f.name)}"] = {**schema, "default": default,
                                           "markdownDescription": f.metadata["help"], "order": order}
    # The alias options.py accepts for both budgets (docs/remote-vllm.md uses it); no
    # default, so it is sent only when the user sets it.
    props["dgls.maxLatencyMs"] = {"type": "integer", "minimum": 1, "order": len(props),
                                  "markdownDescription": "sets `lineBudgetMs` and `blockBudgetMs` together"}
    return props


def properties() -> dict[str, dict]:
    return {**EXTENSION_ONLY, **server_properties()}


if __name__ == "__main__":
    manifest = json.loads(MANIFEST.read_text())
    manifest["contributes"]["configuration"]["properties"] = properties()
    MANIFEST.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {MANIFEST}")
