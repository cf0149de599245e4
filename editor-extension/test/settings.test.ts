import * as assert from "node:assert/strict";
import { EXTENSION_ONLY, completionEnabledFor, objectReader, serverSettingKeys, toServerSettings } from "../src/settings";

describe("settings mapping", () => {
  it("maps nested cube.* settings onto the server's camelCase contract", () => {
    const config = objectReader({
      endpoint: "https://cube.example.com:8443",
      domain: "d1",
      authUrl: "https://auth.example.com",
      models: { completion: "qwen2.5-coder:7b", chat: null },
      completion: { enabled: true, debounceMs: 120, languages: { markdown: false } },
      attestation: { mode: "simulated", policy: "/p.json", reattestIntervalS: 60 },
      tls: { caBundle: "/ca.pem" },
      proxy: "http://proxy:3128",
    });
    const out = toServerSettings(config, "tok");
    assert.equal(out.endpoint, "https://cube.example.com:8443");
    assert.equal(out.domain, "d1");
    assert.equal(out.token, "tok");
    assert.equal(out.proxy, "http://proxy:3128");
    assert.deepEqual(out.models, { completion: "qwen2.5-coder:7b", chat: null });
    assert.deepEqual(out.completion, { enabled: true, debounceMs: 120 });
    assert.deepEqual(out.attestation, { mode: "simulated", policy: "/p.json", reattestIntervalS: 60 });
    assert.deepEqual(out.tls, { caBundle: "/ca.pem" });
  });

  it("keeps extension-only settings away from the server", () => {
    const out = toServerSettings(objectReader({ authUrl: "x", server: { command: "c", args: [] }, trace: { server: "off" } }), null);
    assert.deepEqual(out, { token: null });
  });

  it("sends token null when signed out, so a pushed change clears an initial token", () => {
    assert.ok("token" in toServerSettings(objectReader({}), null));
    assert.equal(toServerSettings(objectReader({}), null).token, null);
  });

  it("lists every contributed server key, none of the extension-only ones", () => {
    const keys = serverSettingKeys();
    for (const key of ["endpoint", "domain", "api", "proxy", "models.completion", "completion.debounceMs", "attestation.mode", "attestation.policy", "attestation.reattestIntervalS", "tls.caBundle", "tls.clientCert"]) {
      assert.ok(keys.includes(key), key);
    }
    for (const key of EXTENSION_ONLY) {
      assert.ok(!keys.includes(key), key);
    }
  });

  it("switches completion per language over the global switch", () => {
    const config = objectReader({ completion: { enabled: true, languages: { markdown: false, python: true } } });
    assert.equal(completionEnabledFor(config, "markdown"), false);
    assert.equal(completionEnabledFor(config, "python"), true);
    assert.equal(completionEnabledFor(config, "rust"), true);
    const off = objectReader({ completion: { enabled: false, languages: { python: true } } });
    assert.equal(completionEnabledFor(off, "rust"), false);
    assert.equal(completionEnabledFor(off, "python"), true);
  });

  it("reads VS Code-style flat keys too", () => {
    const config = objectReader({ "attestation.mode": "off" });
    assert.equal(config.get("attestation.mode"), "off");
  });
});
