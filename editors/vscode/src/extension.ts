// The dgls extension: starts `dgls serve`, hands it the `dgls.*` settings, shows its state
// in the status bar. Suggestions arrive through vscode-languageclient's inline-completion
// feature (ghost text); nothing here computes them.
import * as vscode from "vscode";
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  type LanguageClientOptions,
  type ServerOptions,
} from "vscode-languageclient/node";

import { dglsOutput } from "./output";
import { SECTION, serverSettings } from "./settings";
import { type ServerStatus, statusView } from "./status";

// VS Code's language ids of the languages dgls completes (tsx is `typescriptreact`).
const LANGUAGES = ["python", "javascript", "typescript", "typescriptreact", "go", "rust"];
const STATUS_COMMAND = "dgls.status"; // the server's executeCommand
const STATUS_NOTIFICATION = "dgls/status";

let client: LanguageClient | undefined;
let statusItem: vscode.StatusBarItem;
let lastStatus: ServerStatus | undefined;
let startError: string | undefined;
// The "no model" notification is shown once per spell without a model, not on every status.
let toldNoModel = false;

function config(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration(SECTION);
}

function enabled(): boolean {
  return config().get<boolean>("enable", true);
}

function render(): void {
  const view = statusView(lastStatus, enabled(), startError);
  statusItem.text = view.text;
  statusItem.tooltip = view.tooltip;
  statusItem.backgroundColor = view.problem ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
}

/** The server has no model: say so in a notification of the extension's own (the status
 * bar alone is easy to miss, and the server's warning only reaches the log), with the
 * setting one click away. */
function tellNoModel(status: ServerStatus): void {
  if (status.state === "ready") {
    toldNoModel = false; // a model again: a later loss of it is news
  }
  if (status.state !== "no model" || toldNoModel) {
    return;
  }
  toldNoModel = true;
  const open = "Open Settings";
  void vscode.window
    .showWarningMessage("dgls has no model configured: set dgls.model to a checkpoint directory.", open)
    .then(async (choice) => {
      if (choice === open) {
        await vscode.commands.executeCommand("workbench.action.openSettings", "dgls.model");
      }
    });
}

async function start(output: vscode.LogOutputChannel): Promise<void> {
  const command = config().get<string>("server.command", "dgls");
  const serverOptions: ServerOptions = { command, args: ["serve"] };
  const clientOptions: LanguageClientOptions = {
    documentSelector: LANGUAGES.flatMap((language) => [
      { scheme: "file", language },
      { scheme: "untitled", language },
    ]),
    // A function, read at each (re)start: after a crash the client starts the server again
    // with these, and they must be the settings of now, not of the first start.
    initializationOptions: () => serverSettings((key) => config().inspect(key)),
    outputChannel: output,
  };
  const next = new LanguageClient("dgls", "dgls", serverOptions, clientOptions);
  next.onNotification(STATUS_NOTIFICATION, (status: ServerStatus) => {
    lastStatus = status;
    render();
    tellNoModel(status);
  });
  startError = undefined;
  lastStatus = undefined;
  render();
  try {
    await next.start();
  } catch (error) {
    startError = `\`${command} serve\`: ${error instanceof Error ? error.message : String(error)}`;
    render();
    void vscode.window.showErrorMessage(`dgls could not start ${startError}. Set dgls.server.command to the dgls executable.`);
    return;
  }
  client = next;
  await refreshStatus();
}

async function stop(): Promise<void> {
  const running = client;
  client = undefined;
  lastStatus = undefined;
  if (running !== undefined) {
    await running.stop();
  }
}

async function refreshStatus(): Promise<void> {
  if (client === undefined) {
    return;
  }
  lastStatus = (await client.sendRequest(ExecuteCommandRequest.type, { command: STATUS_COMMAND })) as ServerStatus;
  render();
  tellNoModel(lastStatus);
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const output = dglsOutput(SECTION); // its level follows dgls.trace.server (src/output.ts)
  statusItem = vscode.window.createStatusBarItem("dgls.status", vscode.StatusBarAlignment.Right, 100);
  statusItem.name = "dgls";
  statusItem.command = "dgls.showStatus";
  statusItem.show();
  context.subscriptions.push(output, statusItem);

  context.subscriptions.push(
    vscode.commands.registerCommand("dgls.toggle", async () => {
      await config().update("enable", !enabled(), vscode.ConfigurationTarget.Global);
    }),
    // An explicit request: the server answers it at once (no debounce) with more candidates.
    vscode.commands.registerCommand("dgls.trigger", async () => {
      await vscode.commands.executeCommand("editor.action.inlineSuggest.trigger");
    }),
    vscode.commands.registerCommand("dgls.showStatus", async () => {
      await refreshStatus();
      const view = statusView(lastStatus, enabled(), startError);
      const toggle = enabled() ? "Turn off" : "Turn on";
      const choice = await vscode.window.showInformationMessage(view.tooltip, toggle, "Show log");
      if (choice === toggle) {
        await vscode.commands.executeCommand("dgls.toggle");
      } else if (choice === "Show log") {
        output.show();
      }
    }),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (!event.affectsConfiguration(SECTION)) {
        return;
      }
      if (event.affectsConfiguration(`${SECTION}.enable`) || event.affectsConfiguration(`${SECTION}.server.command`)) {
        await stop();
        if (enabled()) {
          await start(output);
        }
        render();
        return;
      }
      if (client !== undefined) {
        await client.sendNotification(DidChangeConfigurationNotification.type, {
          settings: { [SECTION]: serverSettings((key) => config().inspect(key)) },
        });
      }
    }),
  );

  render();
  if (enabled()) {
    await start(output);
  }
}

export async function deactivate(): Promise<void> {
  await stop();
}
