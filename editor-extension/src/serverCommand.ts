/**
 * Decides how to start cube-lsp: the `cube.server.command` setting, else `cube-lsp` on PATH, else
 * `python -m cube_lsp` with the Python extension's active interpreter. Pure: no `vscode` import;
 * the file check and the interpreter lookup are parameters.
 */
import * as path from "node:path";

/** A resolved server command. */
export interface ServerCommand {
  command: string;
  args: string[];
  source: "setting" | "path" | "python";
}

/** What resolution needs from the machine. */
export interface ResolveInput {
  configured: string | null | undefined;
  args: readonly string[];
  pathEnv: string | undefined;
  platform: string;
  isExecutable: (file: string) => boolean;
  /** The Python extension's interpreter command (e.g. ["/venv/bin/python"]), when it is installed. */
  pythonCommand: () => Promise<string[] | undefined>;
}

/** Find `name` on PATH (with Windows' extensions), or undefined. */
export function findOnPath(name: string, pathEnv: string | undefined, platform: string, isExecutable: (file: string) => boolean): string | undefined {
  const lib = platform === "win32" ? path.win32 : path.posix;
  const separator = platform === "win32" ? ";" : ":";
  const suffixes = platform === "win32" ? [".exe", ".cmd", ".bat", ""] : [""];
  for (const dir of (pathEnv ?? "").split(separator)) {
    if (!dir) {
      continue;
    }
    for (const suffix of suffixes) {
      const candidate = lib.join(dir, name + suffix);
      if (isExecutable(candidate)) {
        return candidate;
      }
    }
  }
  return undefined;
}

/** Resolve the command, or undefined when none of the three ways finds cube-lsp. */
export async function resolveServerCommand(input: ResolveInput): Promise<ServerCommand | undefined> {
  const args = [...input.args];
  const configured = input.configured?.trim();
  if (configured) {
    return { command: configured, args, source: "setting" };
  }
  const onPath = findOnPath("cube-lsp", input.pathEnv, input.platform, input.isExecutable);
  if (onPath) {
    return { command: onPath, args, source: "path" };
  }
  const python = await input.pythonCommand();
  if (python && python.length > 0) {
    return { command: python[0], args: [...python.slice(1), "-m", "cube_lsp", ...args], source: "python" };
  }
  return undefined;
}
