// What the extension sends to `dgls serve`: every `dgls.*` setting the manifest contributes
// except the extension's own. The manifest's settings are generated from dgls/options.py
// (tests/e2e/vscode_manifest.py), so the server's defaults stay in one place.
import manifest from "../package.json";

export const SECTION = "dgls";

/** Settings of the extension itself; the server would call them unknown. */
export const EXTENSION_ONLY: ReadonlySet<string> = new Set(["enable", "server.command", "trace.server"]);

/** The server's setting names (camelCase, without the `dgls.` prefix). */
export const SERVER_KEYS: readonly string[] = Object.keys(manifest.contributes.configuration.properties)
  .map((key) => key.slice(SECTION.length + 1))
  .filter((key) => !EXTENSION_ONLY.has(key));

/**
 * The server's settings object, read through `get` (VS Code's `WorkspaceConfiguration.get`).
 *
 * Every key is sent, defaults included: the server applies a change on top of what it has,
 * so a setting the user removes must arrive as its default to be undone. An emptied text
 * field ("") means unset, which the server spells null.
 */
export function serverSettings(get: (key: string) => unknown): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const key of SERVER_KEYS) {
    const value = get(key);
    if (value === undefined) {
      continue;
    }
    settings[key] = typeof value === "string" && value.trim() === "" ? null : value;
  }
  return settings;
}
