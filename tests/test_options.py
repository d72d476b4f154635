"""Editor settings: typed, defaulted, and bad values reported once each."""

from dgls.options import DEFAULTS, from_settings, settings_doc


def test_camel_case_settings_apply():
    options, problems = from_settings({"debounceMs": 0, "lineBudgetMs": 250, "enabledLanguages": ["go"]})
    assert (options.debounce_ms, options.line_budget_ms, options.enabled_languages) == (0, 250, ("go",))
    assert problems == []


def test_max_latency_sets_both_budgets():
    options, _ = from_settings({"maxLatencyMs": 900})
    assert options.line_budget_ms == options.block_budget_ms == 900


def test_bad_values_fall_back_to_defaults_with_a_message_each():
    options, problems = from_settings({"debounceMs": "soon", "candidatesInvoked": -1, "dtype": "int3",
                                       "enabledLanguages": ["cobol"], "nope": 1})
    assert options == DEFAULTS
    assert len(problems) == 5 and any("unknown setting 'nope'" in p for p in problems)


def test_non_object_settings():
    options, problems = from_settings(["x"])
    assert options == DEFAULTS and "must be an object" in problems[0]


def test_docs_come_from_the_dataclass_and_readme_shows_them_as_they_are():
    from pathlib import Path

    doc = settings_doc()
    assert "| `debounceMs` | `150` |" in doc and "| `model` | `null` |" in doc
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert doc in readme, "README's settings table is stale: paste dgls.options.settings_doc()"


def test_the_vscode_manifest_keeps_exactly_the_machine_options_from_workspaces():
    """A cloned repository's .vscode/settings.json must not choose the backend, the remote
    URL, the API key's variable, the model or tokenizer read from disk, or the command run."""
    import json

    from dgls.options import MACHINE_OPTIONS, _camel

    from .e2e.vscode_manifest import MANIFEST

    assert {"backend", "remote_url", "remote_api_key_env", "remote_tokenizer", "model"} <= set(MACHINE_OPTIONS)
    contributed = json.loads(MANIFEST.read_text())["contributes"]["configuration"]["properties"]
    machine = {key for key, schema in contributed.items() if schema.get("scope") == "machine"}
    assert machine == {f"dgls.{_camel(name)}" for name in MACHINE_OPTIONS} | {"dgls.server.command"}
    assert "dgls.maxLatencyMs" in contributed and "default" not in contributed["dgls.maxLatencyMs"]
