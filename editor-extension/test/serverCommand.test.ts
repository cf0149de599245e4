import * as assert from "node:assert/strict";
import { ResolveInput, findOnPath, resolveServerCommand } from "../src/serverCommand";

function input(over: Partial<ResolveInput>): ResolveInput {
  return {
    configured: null,
    args: [],
    pathEnv: "/usr/bin:/opt/cube/bin",
    platform: "linux",
    isExecutable: () => false,
    pythonCommand: async () => undefined,
    ...over,
  };
}

describe("server command resolution", () => {
  it("prefers the cube.server.command setting", async () => {
    const found = await resolveServerCommand(input({ configured: " /x/cube-lsp ", args: ["--settings", "f"], isExecutable: () => true }));
    assert.deepEqual(found, { command: "/x/cube-lsp", args: ["--settings", "f"], source: "setting" });
  });

  it("then cube-lsp on PATH", async () => {
    const found = await resolveServerCommand(input({ isExecutable: (f) => f === "/opt/cube/bin/cube-lsp", pythonCommand: async () => ["/py"] }));
    assert.deepEqual(found, { command: "/opt/cube/bin/cube-lsp", args: [], source: "path" });
  });

  it("then python -m cube_lsp with the Python extension's interpreter", async () => {
    const found = await resolveServerCommand(input({ args: ["-v"], pythonCommand: async () => ["conda", "run", "python"] }));
    assert.deepEqual(found, { command: "conda", args: ["run", "python", "-m", "cube_lsp", "-v"], source: "python" });
  });

  it("else nothing", async () => {
    assert.equal(await resolveServerCommand(input({})), undefined);
  });

  it("finds Windows executables with their extension", () => {
    assert.equal(findOnPath("cube-lsp", "C:\\a;C:\\b", "win32", (f) => f === "C:\\b\\cube-lsp.exe"), "C:\\b\\cube-lsp.exe");
    assert.equal(findOnPath("cube-lsp", undefined, "linux", () => true), undefined);
  });
});
