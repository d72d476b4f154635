// What the extension sends to `dgls serve`: the `dgls.*` settings the user actually set,
// except the extension's own. The manifest's settings are generated from dgls/options.py
// (tests/e2e/vscode_manifest.py), so the server's defaults stay in one place.
import manifest from "../package.json";

export const SECTION = "dgls";

/** Settings of the extension itself; the server would call them unknown. */
export const EXTENSION_ONLY: ReadonlySet<string> = new Set(["enable", "server.command", "trace.server"]);

const PROPERTIES = manifest.contributes.configuration.properties as Record<string, { scope?: string }>;

/** The server's setting names (camelCase, without the `dgls.` prefix). */
export const SERVER_KEYS: readonly string[] = Object.keys(PROPERTIES)
  .map((key) => key.slice(SECTION.length + 1))
  .filter((key) => !EXTENSION_ONLY.has(key));

/** Settings only the user may set (what runs, what is read, where code and keys go). */
export const MACHINE_KEYS: ReadonlySet<string> = new Set(
  SERVER_KEYS.filter((key) => PROPERTIES[`${SECTION}.${key}`]?.scope === "machine"),
);

/** The parts of VS Code's `WorkspaceConfiguration.inspect` result this reads. */
export interface Inspected {
  globalValue?: unknown;
  workspaceValue?: unknown;
  workspaceFolderValue?: unknown;
}

/**
 * The server's settings object, read through `inspect` (VS Code's
 * `WorkspaceConfiguration.inspect`).
 *
 * Only values the user set are sent, never the manifest's defaults: the server applies
 * every settings message over the user's config file, so an unsent key keeps the config
 * file's value (or the default). A workspace's value counts only for settings that are not
 * machine-scoped. An emptied text field ("") means unset, which the server spells null.
 */
export function serverSettings(inspect: (key: string) => Inspected | undefined): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const key of SERVER_KEYS) {
    const found = inspect(key);
    if (found === undefined) {
      continue;
    }
    const value = MACHINE_KEYS.has(key)
      ? found.globalValue
      : found.workspaceFolderValue ?? found.workspaceValue ?? found.globalValue;
    if (value === undefined) {
      continue;
    }
    settings[key] = typeof value === "string" && value.trim() === "" ? null : value;
  }
  return settings;
}
