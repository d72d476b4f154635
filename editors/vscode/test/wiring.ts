// The extension's wiring without a VS Code binary: the JSON-RPC libraries that
// vscode-languageclient runs on (vscode-jsonrpc, vscode-languageserver-protocol) talk to the
// real `dgls serve` over stdio, declaring what VS Code declares (UTF-16 positions, inline
// completion, work-done progress), with the settings object the extension builds
// (src/settings.ts) and the status text it shows (src/status.ts).
//
// Driven by tests/e2e/test_vscode_extension.py, which passes through the environment:
//   DGLS_COMMAND   the server executable (`dgls`)
//   DGLS_SETTINGS  JSON of the user's settings (their global values)
//   DGLS_ANSWER    the word the test model always writes
// Exits 0 when every check passed; otherwise prints the failed check and exits 1.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";

import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from "vscode-jsonrpc/node";
import {
  DidChangeConfigurationNotification,
  DidOpenTextDocumentNotification,
  ExecuteCommandRequest,
  ExitNotification,
  InitializedNotification,
  InitializeRequest,
  InlineCompletionRequest,
  InlineCompletionTriggerKind,
  LogMessageNotification,
  type InlineCompletionList,
  type InlineCompletionItem,
  type Position,
  ShutdownRequest,
  WorkDoneProgressCreateRequest,
} from "vscode-languageserver-protocol";

import { type Inspected, SECTION, serverSettings } from "../src/settings";
import { type ServerStatus, statusView } from "../src/status";

const answer = process.env.DGLS_ANSWER ?? "";
const user = JSON.parse(process.env.DGLS_SETTINGS ?? "{}") as Record<string, unknown>;

/** VS Code's `getConfiguration("dgls").inspect`: the user's value as the global one, and a
 * cloned repository's `.vscode/settings.json` trying to send code to another server. */
const HOSTILE_WORKSPACE: Record<string, unknown> = { backend: "vllm", remoteUrl: "https://attacker.invalid" };
function inspect(key: string): Inspected {
  return {
    globalValue: key in user ? user[key] : undefined,
    workspaceValue: HOSTILE_WORKSPACE[key],
  };
}

async function main(): Promise<void> {
  const server = spawn(process.env.DGLS_COMMAND ?? "dgls", ["serve"], { stdio: ["pipe", "pipe", "inherit"] });
  const connection = createMessageConnection(new StreamMessageReader(server.stdout), new StreamMessageWriter(server.stdin));
  const logs: string[] = [];
  const statuses: ServerStatus[] = [];
  connection.onNotification(LogMessageNotification.type, (params) => {
    logs.push(params.message);
  });
  connection.onNotification("dgls/status", (status: ServerStatus) => {
    statuses.push(status);
  });
  connection.onRequest(WorkDoneProgressCreateRequest.type, () => {});
  connection.listen();

  // Only what the user set is sent (a default would override the user's config file), and
  // no machine-scoped value from the workspace.
  const sent = serverSettings(inspect);
  assert.deepEqual(Object.keys(sent).sort(), Object.keys(user).sort());
  const init = await connection.sendRequest(InitializeRequest.type, {
    processId: process.pid,
    clientInfo: { name: "Visual Studio Code", version: "1.91.0" },
    rootUri: null,
    capabilities: {
      general: { positionEncodings: ["utf-16"], markdown: { parser: "marked", version: "1.1.0" } },
      window: { workDoneProgress: true },
      workspace: { configuration: true, didChangeConfiguration: { dynamicRegistration: true } },
      textDocument: {
        synchronization: { dynamicRegistration: true, didSave: true },
        inlineCompletion: { dynamicRegistration: true },
        completion: { completionItem: { snippetSupport: true, documentationFormat: ["markdown", "plaintext"] } },
      },
    },
    initializationOptions: sent,
  });
  assert.ok(init.capabilities.inlineCompletionProvider, "the server offers inline completion");
  assert.equal(init.capabilities.positionEncoding ?? "utf-16", "utf-16");
  await connection.sendNotification(InitializedNotification.type, {});

  const open = async (uri: string, text: string) =>
    connection.sendNotification(DidOpenTextDocumentNotification.type, {
      textDocument: { uri, languageId: "python", version: 1, text },
    });
  const invoke = (uri: string, position: Position) =>
    connection.sendRequest(InlineCompletionRequest.type, {
      textDocument: { uri },
      position,
      context: { triggerKind: InlineCompletionTriggerKind.Invoked },
    });
  const items = (result: InlineCompletionList | InlineCompletionItem[] | null) =>
    result === null ? [] : Array.isArray(result) ? result : result.items;
  const text = (item: InlineCompletionItem) => (typeof item.insertText === "string" ? item.insertText : item.insertText.value);

  // Ghost text after `return `.
  await open("file:///project/app.py", "def f(value):\n    return \n");
  const first = items(await invoke("file:///project/app.py", { line: 1, character: 11 }));
  assert.ok(first.length > 0, "a suggestion arrives");
  assert.ok(text(first[0]).startsWith(answer), `it is the model's answer: ${JSON.stringify(first[0])}`);
  assert.deepEqual(first[0].range?.start, { line: 1, character: 11 });

  // UTF-16 columns: the cursor is after a CJK string and an emoji (2 units), before `)`.
  const wide = 'x = f("漢字🎉", )\n';
  const column = 'x = f("漢字🎉", '.length; // JavaScript strings count UTF-16 units, as VS Code does
  await open("file:///project/wide.py", wide);
  const [item] = items(await invoke("file:///project/wide.py", { line: 0, character: column }));
  assert.ok(item !== undefined && text(item).startsWith(answer) && text(item).endsWith(")"));
  assert.deepEqual(item.range, { start: { line: 0, character: column }, end: { line: 0, character: column + 1 } });

  // The status bar: what the server reports, as the extension shows it.
  const status = (await connection.sendRequest(ExecuteCommandRequest.type, { command: "dgls.status" })) as ServerStatus;
  assert.equal(status.state, "ready");
  assert.match(statusView(status, true).text, /^\$\(sparkle\) dgls \d+ ms$/);
  assert.ok(statuses.some((s) => s.state === "ready"), "dgls/status notifications arrive");

  // A settings change as the extension sends it: only Go enabled, so no Python suggestion.
  await connection.sendNotification(DidChangeConfigurationNotification.type, {
    settings: { [SECTION]: serverSettings((key) => (key === "enabledLanguages" ? { globalValue: ["go"] } : inspect(key))) },
  });
  await open("file:///project/later.py", "y = \n");
  assert.equal(items(await invoke("file:///project/later.py", { line: 0, character: 4 })).length, 0);

  // Every setting the extension sends is one the server knows and accepts.
  const complaints = logs.filter((message) => message.includes("setting"));
  assert.deepEqual(complaints, [], "the server accepted every setting");

  await connection.sendRequest(ShutdownRequest.type);
  await connection.sendNotification(ExitNotification.type);
  connection.dispose();
  console.log(`ok: ${first.length} inline suggestion(s), status "${statusView(status, true).text}"`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(1);
  },
);
