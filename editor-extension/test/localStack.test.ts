import * as assert from "node:assert/strict";
import { clientJsonPath, defaultDataDir, readLocalStack, shouldOfferLocalStack } from "../src/localStack";

// What `cube-stack up` writes (server-stack/cube_stack/stack.py).
const CLIENT_JSON = JSON.stringify({
  endpoint: "https://127.0.0.1:43211",
  domain: "5f0c",
  token: "pat_secret",
  api: "ollama",
  models: { completion: "demo", embedding: null },
  attestation: { mode: "simulated", policy: "/home/u/.local/share/cube-stack/policy.json" },
  tls: { caBundle: "/home/u/.local/share/cube-stack/proxy-cert.pem" },
});

describe("local stack detection", () => {
  it("uses platformdirs' user data directory", () => {
    assert.equal(clientJsonPath("linux", {}, "/home/u"), "/home/u/.local/share/cube-stack/client.json");
    assert.equal(clientJsonPath("linux", { XDG_DATA_HOME: "/xdg" }, "/home/u"), "/xdg/cube-stack/client.json");
    assert.equal(defaultDataDir("darwin", {}, "/Users/u"), "/Users/u/Library/Application Support/cube-stack");
    assert.equal(defaultDataDir("win32", { LOCALAPPDATA: "C:\\Users\\u\\AppData\\Local" }, "C:\\Users\\u"), "C:\\Users\\u\\AppData\\Local\\cube-stack\\cube-stack");
  });

  it("splits client.json into cube.* settings and the token", () => {
    const stack = readLocalStack("/f", () => CLIENT_JSON);
    assert.ok(stack);
    assert.equal(stack.token, "pat_secret");
    const settings = new Map(stack.settings);
    assert.equal(settings.get("endpoint"), "https://127.0.0.1:43211");
    assert.equal(settings.get("domain"), "5f0c");
    assert.equal(settings.get("attestation.mode"), "simulated");
    assert.equal(settings.get("tls.caBundle"), "/home/u/.local/share/cube-stack/proxy-cert.pem");
    assert.equal(settings.get("models.completion"), "demo");
    assert.ok(!settings.has("token"));
  });

  it("finds nothing when the file is missing, malformed or not a stack's", () => {
    assert.equal(readLocalStack("/f", () => undefined), undefined);
    assert.equal(readLocalStack("/f", () => "{"), undefined);
    assert.equal(readLocalStack("/f", () => "[]"), undefined);
    assert.equal(readLocalStack("/f", () => JSON.stringify({ endpoint: "x" })), undefined);
  });

  it("offers a running stack only until the user chose, and not when the settings point at it", () => {
    const stack = readLocalStack("/f", () => CLIENT_JSON);
    assert.equal(shouldOfferLocalStack(stack, null, false), true);
    assert.equal(shouldOfferLocalStack(stack, "https://cube.example.com", false), true);
    // Chosen before (either button, or Cube: Use Local Stack): never again, even on a new port.
    assert.equal(shouldOfferLocalStack(stack, null, true), false);
    assert.equal(shouldOfferLocalStack(stack, "https://127.0.0.1:9", true), false);
    // Already in use, written with a trailing slash or another case.
    assert.equal(shouldOfferLocalStack(stack, "https://127.0.0.1:43211", false), false);
    assert.equal(shouldOfferLocalStack(stack, "HTTPS://127.0.0.1:43211/", false), false);
    assert.equal(shouldOfferLocalStack(undefined, null, false), false);
  });
});
