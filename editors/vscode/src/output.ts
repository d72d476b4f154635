// The "dgls" output channel. vscode-languageclient 11 wants a LogOutputChannel and traces the
// LSP traffic only while that channel's log level is Trace; a real log channel's level is
// VS Code's own (Info by default, changed per channel in the Output view), so turning on
// `dgls.trace.server`, as the README says, showed nothing. This channel is a plain one whose
// level follows the setting: Trace while `dgls.trace.server` is not "off", else Info.
import * as vscode from "vscode";

type Line = (message: string | Error, ...args: unknown[]) => void;

export function dglsOutput(section: string): vscode.LogOutputChannel {
  const channel = vscode.window.createOutputChannel("dgls");
  const changed = new vscode.EventEmitter<vscode.LogLevel>();
  const level = (): vscode.LogLevel =>
    vscode.workspace.getConfiguration(section).get<string>("trace.server", "off") === "off"
      ? vscode.LogLevel.Info
      : vscode.LogLevel.Trace;
  const watch = vscode.workspace.onDidChangeConfiguration((event) => {
    if (event.affectsConfiguration(`${section}.trace.server`)) {
      changed.fire(level());
    }
  });
  const at =
    (lineLevel: vscode.LogLevel, tag: string): Line =>
    (message, ...args) => {
      if (lineLevel < level()) {
        return;
      }
      const text = message instanceof Error ? (message.stack ?? message.message) : message;
      const rest = args.map((arg) => (typeof arg === "string" ? arg : JSON.stringify(arg)));
      channel.appendLine(`${new Date().toISOString()} [${tag}] ${[text, ...rest].join(" ")}`);
    };
  return {
    name: channel.name,
    get logLevel() {
      return level();
    },
    onDidChangeLogLevel: changed.event,
    trace: at(vscode.LogLevel.Trace, "trace"),
    debug: at(vscode.LogLevel.Debug, "debug"),
    info: at(vscode.LogLevel.Info, "info"),
    warn: at(vscode.LogLevel.Warning, "warning"),
    error: at(vscode.LogLevel.Error, "error"),
    append: (value) => channel.append(value),
    appendLine: (value) => channel.appendLine(value),
    replace: (value) => channel.replace(value),
    clear: () => channel.clear(),
    show: (columnOrPreserveFocus?: vscode.ViewColumn | boolean, preserveFocus?: boolean) => {
      if (typeof columnOrPreserveFocus === "number") {
        channel.show(columnOrPreserveFocus, preserveFocus);
      } else {
        channel.show(columnOrPreserveFocus);
      }
    },
    hide: () => channel.hide(),
    dispose: () => {
      watch.dispose();
      changed.dispose();
      channel.dispose();
    },
  };
}
