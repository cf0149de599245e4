/**
 * Finds the `client.json` that `cube-stack up` writes into its data directory (platformdirs'
 * user_data_path("cube-stack"), see server-stack/cube_stack/stack.py) and splits it into `cube.*`
 * settings and the token, which goes to SecretStorage only. Pure: no `vscode` import; the
 * filesystem and environment are parameters.
 */
import * as path from "node:path";

/** The local stack's settings, ready to apply. */
export interface LocalStack {
  file: string;
  /** `cube.*` keys (without the prefix) and their values. */
  settings: [string, unknown][];
  token: string | undefined;
}

/** platformdirs' user_data_path("cube-stack") for `platform`. */
export function defaultDataDir(platform: string, env: Record<string, string | undefined>, home: string): string {
  if (platform === "win32") {
    // platformdirs uses the app name as the author too when none is given, and the local AppData.
    const local = env.LOCALAPPDATA ?? path.win32.join(home, "AppData", "Local");
    return path.win32.join(local, "cube-stack", "cube-stack");
  }
  if (platform === "darwin") {
    return path.posix.join(home, "Library", "Application Support", "cube-stack");
  }
  const xdg = env.XDG_DATA_HOME?.trim();
  return path.posix.join(xdg ? xdg : path.posix.join(home, ".local", "share"), "cube-stack");
}

/** Where `cube-stack up` writes its client settings. */
export function clientJsonPath(platform: string, env: Record<string, string | undefined>, home: string): string {
  const dir = defaultDataDir(platform, env, home);
  return platform === "win32" ? path.win32.join(dir, "client.json") : path.posix.join(dir, "client.json");
}

/** Read and check `client.json`; undefined when it is missing or not a usable settings object. */
export function readLocalStack(file: string, readFile: (file: string) => string | undefined): LocalStack | undefined {
  const text = readFile(file);
  if (text === undefined) {
    return undefined;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    return undefined;
  }
  const { token, ...rest } = raw as Record<string, unknown>;
  if (typeof rest.endpoint !== "string" || typeof rest.domain !== "string") {
    return undefined;
  }
  return { file, settings: flatten(rest, ""), token: typeof token === "string" && token ? token : undefined };
}

function flatten(value: Record<string, unknown>, prefix: string): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const [key, inner] of Object.entries(value)) {
    // `completion.template` is one object-valued setting; every other object is a group of settings.
    const dotted = prefix + key;
    if (inner !== null && typeof inner === "object" && !Array.isArray(inner) && dotted !== "completion.template") {
      out.push(...flatten(inner as Record<string, unknown>, dotted + "."));
    } else {
      out.push([dotted, inner]);
    }
  }
  return out;
}

/** The stack's endpoint, from its settings. */
export function stackEndpoint(stack: LocalStack): string | undefined {
  const endpoint = stack.settings.find(([key]) => key === "endpoint")?.[1];
  return typeof endpoint === "string" ? endpoint : undefined;
}

function sameEndpoint(a: string, b: string): boolean {
  const normal = (url: string) => url.trim().replace(/\/+$/, "").toLowerCase();
  return normal(a) === normal(b);
}

/**
 * Whether to offer the local stack found at start-up: not once the user has chosen (Use Local Stack,
 * Not now, or the command itself, which `chosen` records), and not when the settings already point
 * at it (a trailing slash or the case of the host aside).
 */
export function shouldOfferLocalStack(stack: LocalStack | undefined, configuredEndpoint: unknown, chosen: boolean): stack is LocalStack {
  if (chosen || !stack) {
    return false;
  }
  const endpoint = stackEndpoint(stack);
  return endpoint !== undefined && !(typeof configuredEndpoint === "string" && sameEndpoint(configuredEndpoint, endpoint));
}
