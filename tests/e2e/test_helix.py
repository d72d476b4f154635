"""editors/helix/languages.toml: its keys against Helix's languages.toml documentation, and
the request sequence Helix sends, replayed against the real `dgls serve` (Helix is not
packaged here).

The documented keys and defaults below are from the Helix book (`book/src/languages.md`)
and Helix's built-in `languages.toml`, master of 2026-07-23 (after release 25.07); the
capabilities and the sequence from `helix-lsp/src/client.rs` (initialize),
`helix-term/src/application.rs` (didChangeConfiguration after initialized) and
`helix-term/src/handlers/completion/request.rs` (trigger kinds) of the same commit."""

from __future__ import annotations

import asyncio
import tomllib

from lsprotocol import types as t
from pytest_lsp import ClientServerConfig

from dgls.options import LANGUAGES

from .conftest import SMALL, open_doc
from .editors import EDITORS, dgls_command, server_env

CONFIG = tomllib.loads((EDITORS / "helix" / "languages.toml").read_text())

# "Language Server configuration": the keys of a [language-server.NAME] table.
SERVER_KEYS = {"command", "args", "config", "timeout", "environment", "required-root-patterns"}
# "Language configuration": the keys of a [[language]] table.
LANGUAGE_KEYS = {
    "name", "language-id", "scope", "injection-regex", "file-types", "shebangs", "roots", "auto-format",
    "diagnostic-severity", "comment-tokens", "comment-token", "block-comment-tokens", "indent",
    "language-servers", "grammar", "formatter", "soft-wrap", "text-width", "rulers", "path-completion",
    "word-completion", "workspace-lsp-roots", "persistent-diagnostic-sources", "rainbow-brackets",
    "code-actions-on-save", "auto-pairs",
}
# "Configuring Language Servers for a language": the feature names.
FEATURES = {
    "format", "goto-declaration", "goto-definition", "goto-type-definition", "goto-reference",
    "goto-implementation", "signature-help", "hover", "document-highlight", "completion", "code-action",
    "document-links", "workspace-command", "document-symbols", "workspace-symbols", "diagnostics",
    "pull-diagnostics", "rename-symbol", "inlay-hints", "document-colors", "call-hierarchy",
}
# Helix's built-in language-servers per language: a user's list replaces it, so ours keeps it.
HELIX_DEFAULTS = {
    "python": ["ty", "ruff", "jedi", "pylsp", "zuban"],
    "javascript": ["typescript-language-server"],
    "typescript": ["typescript-language-server"],
    "tsx": ["typescript-language-server"],
    "go": ["gopls", "golangci-lint-lsp"],
    "rust": ["rust-analyzer"],
}


def test_language_server_table_uses_documented_keys():
    assert set(CONFIG) == {"language-server", "language"}
    (name, server), = CONFIG["language-server"].items()
    assert name == "dgls" and set(server) <= SERVER_KEYS
    assert server["command"] == "dgls" and server["args"] == ["serve"]


def test_every_dgls_language_adds_dgls_for_completion_only_beside_the_defaults():
    languages = {lang["name"]: lang for lang in CONFIG["language"]}
    assert set(languages) == set(LANGUAGES)  # exactly the languages dgls completes
    for name, lang in languages.items():
        assert set(lang) <= LANGUAGE_KEYS
        *usual, dgls = lang["language-servers"]
        assert usual == HELIX_DEFAULTS[name], f"{name}: keep Helix's own servers first"
        assert dgls == {"name": "dgls", "only-features": ["completion"]}
        assert set(dgls["only-features"]) <= FEATURES


def helix_capabilities() -> t.ClientCapabilities:
    """What Helix's initialize declares that a completion-only server sees."""
    return t.ClientCapabilities(
        workspace=t.WorkspaceClientCapabilities(
            configuration=True, did_change_configuration=t.DidChangeConfigurationClientCapabilities(False),
            workspace_folders=True, apply_edit=True,
            execute_command=t.ExecuteCommandClientCapabilities(dynamic_registration=False)),
        text_document=t.TextDocumentClientCapabilities(
            completion=t.CompletionClientCapabilities(completion_item=t.ClientCompletionItemOptions(
                snippet_support=True, insert_replace_support=True, deprecated_support=True,
                resolve_support=t.ClientCompletionItemResolveOptions(
                    properties=["documentation", "detail", "additionalTextEdits"]),
                tag_support=t.CompletionItemTagOptions(value_set=[t.CompletionItemTag.Deprecated]))),
            hover=t.HoverClientCapabilities(content_format=[t.MarkupKind.Markdown])),
        window=t.WindowClientCapabilities(work_done_progress=True, show_document=t.ShowDocumentClientCapabilities(True)),
        general=t.GeneralClientCapabilities(position_encodings=[
            t.PositionEncodingKind.Utf8, t.PositionEncodingKind.Utf32, t.PositionEncodingKind.Utf16]),
    )


def completion(client, uri, line, character, kind, char=None):
    """Sent the way Helix sends it: never awaited before the next, never cancelled."""
    params = t.CompletionParams(text_document=t.TextDocumentIdentifier(uri=uri), position=t.Position(line, character),
                                context=t.CompletionContext(trigger_kind=kind, trigger_character=char))
    return asyncio.ensure_future(client.protocol.send_request_async(t.TEXT_DOCUMENT_COMPLETION, params))


async def test_helix_request_sequence_against_the_real_server(runtime, fixed_checkpoint, answer, tmp_path):
    server = CONFIG["language-server"]["dgls"]
    command = dgls_command() if server["command"] == "dgls" else server["command"]
    # The user's `config` (the test model's small canvases on top of any in the file).
    config = {**server.get("config", {}), **SMALL}
    client = await ClientServerConfig([command, *server["args"]],
                                      server_env=server_env(runtime, fixed_checkpoint)).start()
    sent: list[str] = []  # every request and notification the client sends
    for name in ("send_request", "notify"):
        def record(method, *args, _original=getattr(client.protocol, name), **kwargs):
            sent.append(method)
            return _original(method, *args, **kwargs)
        setattr(client.protocol, name, record)
    try:
        result = await client.initialize_session(t.InitializeParams(
            capabilities=helix_capabilities(), initialization_options=config, process_id=None,
            client_info=t.ClientInfo(name="helix", version="25.07"), root_uri=tmp_path.as_uri(),
            workspace_folders=[t.WorkspaceFolder(uri=tmp_path.as_uri(), name=tmp_path.name)]))
        caps = result.capabilities
        assert caps.position_encoding == t.PositionEncodingKind.Utf8
        assert caps.completion_provider is not None and " " in caps.completion_provider.trigger_characters
        assert not caps.completion_provider.resolve_provider  # so Helix never sends completionItem/resolve
        client.workspace_did_change_configuration(t.DidChangeConfigurationParams(settings=config))

        uri = (tmp_path / "app.py").as_uri()
        open_doc(client, uri, "def f(value):\n    \n")
        requests = []
        # The user types `return ` at the start of line 1; one didChange per key, as Helix
        # sends them (incremental, UTF-8 columns). Completion is asked: after two word
        # characters (Helix's completion-trigger-len, as an invoked request), then on every
        # key while the open menu's list is incomplete, and for the trigger character " ".
        for i, ch in enumerate("return ", start=0):
            client.text_document_did_change(t.DidChangeTextDocumentParams(
                text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=2 + i),
                content_changes=[t.TextDocumentContentChangePartial(
                    range=t.Range(t.Position(1, 4 + i), t.Position(1, 4 + i)), text=ch)]))
            column = 4 + i + 1
            if ch == " ":
                requests.append(completion(client, uri, 1, column, t.CompletionTriggerKind.TriggerCharacter, " "))
            elif i == 1:
                requests.append(completion(client, uri, 1, column, t.CompletionTriggerKind.Invoked))
            elif i > 1:
                requests.append(completion(client, uri, 1, column, t.CompletionTriggerKind.TriggerForIncompleteCompletions))
            await asyncio.sleep(0.02)
        answers = await asyncio.wait_for(asyncio.gather(*requests), 30)  # all answered, none left hanging

        last = answers[-1]
        (item,) = last.items
        assert item.text_edit.new_text.startswith(answer)
        assert item.text_edit.range == t.Range(t.Position(1, 11), t.Position(1, 11))
        assert last.is_incomplete  # Helix asks again as the user types on

        # UTF-8 columns: Helix counts bytes; the server must answer in bytes too.
        wide_uri = (tmp_path / "wide.py").as_uri()
        open_doc(client, wide_uri, 'x = f("漢字🎉", )\n')
        column = len('x = f("漢字🎉", '.encode())
        (wide,) = (await completion(client, wide_uri, 0, column, t.CompletionTriggerKind.Invoked)).items
        assert wide.text_edit.range == t.Range(t.Position(0, column), t.Position(0, column + 1))
        assert wide.text_edit.new_text.startswith(answer) and wide.text_edit.new_text.endswith(")")
        assert "textDocument/didChange" in sent and sent.count("textDocument/completion") == len(requests) + 1
        assert "$/cancelRequest" not in sent and "completionItem/resolve" not in sent
        assert not [m for m in client.log_messages if "setting" in m.message]  # the config was accepted
    finally:
        await asyncio.wait_for(client.shutdown_session(), 10)
