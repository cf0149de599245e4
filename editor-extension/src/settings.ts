/**
 * Reads the `cube.*` settings and turns them into cube-lsp's settings contract (the camelCase JSON of
 * cube_lsp/settings.py), which reaches the server as initializationOptions, as the answer to
 * `workspace/configuration` (section `cube`) and in `workspace/didChangeConfiguration`.
 *
 * The list of settings comes from package.json, so a setting contributed there reaches the server
 * unless it is named in EXTENSION_ONLY. Pure: no `vscode` import, so it runs in plain node tests.
 */
import manifest from "../package.json";

/** The `cube` configuration section; cube-lsp asks for it by this name. */
export const SECTION = "cube";

/** Settings the extension keeps to itself (relative to `cube.`); everything else goes to the server. */
export const EXTENSION_ONLY: ReadonlySet<string> = new Set([
  "authUrl", // where Cube: Sign In asks for tokens
  "completion.languages", // applied by the extension's inline completion middleware
  "server.command", // how the extension launches cube-lsp
  "server.args",
  "trace.server", // vscode-languageclient's message trace
]);

/** What the extension needs of a settings source; `vscode.WorkspaceConfiguration` is one. */
export interface ConfigReader {
  get<T>(key: string): T | undefined;
}

/** The server settings' keys relative to `cube.`, e.g. `attestation.mode`, from package.json. */
export function serverSettingKeys(): string[] {
  const keys: string[] = [];
  for (const group of manifest.contributes.configuration) {
    for (const full of Object.keys(group.properties)) {
      const key = full.slice(SECTION.length + 1);
      if (!EXTENSION_ONLY.has(key)) {
        keys.push(key);
      }
    }
  }
  return keys;
}

/** Build the server's settings object from `cube.*` settings and the signed-in token (null: none). */
export function toServerSettings(
  config: ConfigReader,
  token: string | null,
  keys: readonly string[] = serverSettingKeys(),
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const value = config.get<unknown>(key);
    if (value !== undefined) {
      setPath(out, key, value);
    }
  }
  // Always present, null when signed out: the server deep-merges pushed settings over its
  // initializationOptions, so leaving the key out would keep a token the user signed out of.
  out.token = token;
  return out;
}

/** Whether inline completions are on for `languageId`: the per-language map overrides the switch. */
export function completionEnabledFor(config: ConfigReader, languageId: string): boolean {
  const languages = config.get<Record<string, unknown>>("completion.languages") ?? {};
  const own = languages[languageId];
  if (typeof own === "boolean") {
    return own;
  }
  return config.get<boolean>("completion.enabled") !== false;
}

/** A ConfigReader over a nested plain object, as `cube.*` settings look in settings.json. */
export function objectReader(values: Record<string, unknown>): ConfigReader {
  return {
    get<T>(key: string): T | undefined {
      if (key in values) {
        return values[key] as T;
      }
      let node: unknown = values;
      for (const part of key.split(".")) {
        if (node === null || typeof node !== "object" || !(part in (node as object))) {
          return undefined;
        }
        node = (node as Record<string, unknown>)[part];
      }
      return node as T;
    },
  };
}

function setPath(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const parts = dotted.split(".");
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (next === null || typeof next !== "object") {
      node[part] = {};
    }
    node = node[part] as Record<string, unknown>;
  }
  node[parts[parts.length - 1]] = value;
}
