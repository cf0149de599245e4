import * as assert from "node:assert/strict";
import { attestationHtml, attestationRows } from "../src/attestationPage";
import { OnceNotices, StatusPayload, renderStatus } from "../src/status";

const MEASUREMENT = "ab".repeat(48);
const running = { running: true, signedIn: true };

function status(attestation: StatusPayload["attestation"], extra: Partial<StatusPayload> = {}): StatusPayload {
  return { state: "ready", message: "ready", code: null, endpoint: "https://127.0.0.1:8443", model: "m", attestation, ...extra };
}

describe("status rendering", () => {
  it("verified: product and a short measurement, no warning colour", () => {
    const view = renderStatus(status({ mode: "required", state: "verified", product: "Genoa", measurement: MEASUREMENT }), running);
    assert.equal(view.kind, "verified");
    assert.match(view.text, /Genoa ababababab/);
    assert.ok(!view.text.includes(MEASUREMENT));
    assert.equal(view.colour, undefined);
    assert.ok(!/SIMULATED/.test(view.text));
  });

  it("simulated: the word SIMULATED and the warning colour, never the verified look", () => {
    const view = renderStatus(status({ mode: "simulated", state: "simulated", product: "Milan", measurement: MEASUREMENT }), running);
    assert.equal(view.kind, "simulated");
    assert.match(view.text, /SIMULATED/);
    assert.equal(view.colour, "warning");
    assert.ok(!view.text.includes("$(shield)"));
  });

  it("failed: error colour, the hover names the failed check and what to do", () => {
    const view = renderStatus(
      status({ mode: "required", state: "failed", code: "attestation.measurement_mismatch", message: "measurement is X, wanted Y" }, { state: "error", code: "attestation.measurement_mismatch" }),
      running,
    );
    assert.equal(view.kind, "failed");
    assert.equal(view.colour, "error");
    assert.match(view.tooltip, /attestation\.measurement_mismatch/);
    assert.match(view.tooltip, /policy/);
  });

  it("an attestation error in the status without a failed attestation object is still failed", () => {
    const view = renderStatus(status({ mode: "required", state: "unattested" }, { state: "error", code: "attestation.policy_missing", message: "no policy" }), running);
    assert.equal(view.kind, "failed");
    assert.match(view.tooltip, /cube\.attestation\.policy/);
  });

  it("a proxy that cannot be reached is an error with its reason, not a failed attestation", () => {
    // What cube-lsp sends after `cube-stack up` was stopped.
    const down = { mode: "simulated", state: "failed", code: "proxy.unreachable", message: "cannot connect to https://127.0.0.1:1: Connection refused" };
    for (const payload of [status(down), status(down, { state: "error", code: "proxy.unreachable", message: down.message })]) {
      const view = renderStatus(payload, running);
      assert.equal(view.kind, "error");
      assert.equal(view.colour, "error");
      assert.match(view.text, /proxy\.unreachable/);
      assert.match(view.tooltip, /Connection refused/);
    }
  });

  it("other errors: error colour with the code", () => {
    const view = renderStatus(status({ mode: "required", state: "verified" }, { state: "error", code: "proxy.unreachable", message: "down" }), running);
    assert.equal(view.kind, "error");
    assert.equal(view.colour, "error");
    assert.match(view.text, /proxy\.unreachable/);
  });

  it("not signed in: a 401 without a session asks to sign in", () => {
    const view = renderStatus(status(null, { state: "error", code: "proxy.unauthorized", message: "401" }), { running: true, signedIn: false });
    assert.equal(view.kind, "notSignedIn");
    assert.match(view.tooltip, /Sign In/);
  });

  it("not connected: the server is not running, with the reason", () => {
    const view = renderStatus(undefined, { running: false, signedIn: false, startError: "cube-lsp was not found" });
    assert.equal(view.kind, "notConnected");
    assert.equal(view.colour, "error");
    assert.match(view.tooltip, /not found/);
  });

  it("unconfigured, disabled, unattested and starting", () => {
    assert.equal(renderStatus(status(null, { state: "unconfigured" }), running).kind, "unconfigured");
    assert.equal(renderStatus(status(null, { state: "disabled" }), running).kind, "disabled");
    const off = renderStatus(status({ mode: "off", state: "unattested" }), running);
    assert.equal(off.kind, "unattested");
    assert.equal(off.colour, "warning");
    assert.equal(renderStatus(status({ mode: "required", state: "unattested" }), running).colour, undefined);
    assert.equal(renderStatus(undefined, { running: false, signedIn: true }).kind, "starting");
  });
});

describe("attestation page", () => {
  const ctx = { policyFile: "/home/u/policy.json", receivedAt: "2026-12-03T12:00:00.000Z", nonce: "n0nce" };

  it("shows every field the server reports, plus extra ones it adds later", () => {
    const rows = new Map(
      attestationRows(status({ mode: "simulated", state: "simulated", product: "Milan", measurement: MEASUREMENT, tcb: { snp: 22, microcode: 213 }, spkiSha256: "cafe" }), ctx),
    );
    assert.equal(rows.get("Measurement"), MEASUREMENT);
    assert.equal(rows.get("Product"), "Milan");
    assert.equal(rows.get("Simulated"), "YES");
    assert.equal(rows.get("Endpoint"), "https://127.0.0.1:8443");
    assert.equal(rows.get("Policy file"), "/home/u/policy.json");
    assert.equal(rows.get("Policy result"), "passed");
    assert.equal(rows.get("TCB"), "snp=22, microcode=213");
    assert.equal(rows.get("spkiSha256"), "cafe");
  });

  it("shows the root of trust, the pinned key and when it was verified", () => {
    const att = {
      mode: "required",
      state: "verified",
      product: "Genoa",
      measurement: MEASUREMENT,
      root_of_trust: "amd",
      root_fingerprint: "12".repeat(32),
      signer: "VCEK",
      pinned_key_sha256: "ef".repeat(32),
      policy_file: "/srv/policy.json",
      verified_at: "2026-12-03T17:00:00+00:00",
    };
    const rows = new Map(attestationRows(status(att), ctx));
    assert.equal(rows.get("Root of trust"), `AMD root key (ARK) pinned in cube-lsp, SHA-256 ${"12".repeat(32)}`);
    assert.equal(rows.get("Pinned key (SHA-256 of the TLS key)"), "ef".repeat(32));
    assert.equal(rows.get("Verified at"), "2026-12-03T17:00:00+00:00");
    assert.equal(rows.get("Signed by"), "VCEK");
    // The policy the server used wins over the setting (they differ only while a change is in flight).
    assert.equal(rows.get("Policy file"), "/srv/policy.json");
    // Known fields are not repeated as raw extra rows.
    assert.equal(rows.get("pinned_key_sha256"), undefined);
  });

  it("says SIMULATED in the root of trust and shows no pinned key before a verdict", () => {
    const simulated = new Map(attestationRows(status({ mode: "simulated", state: "simulated", root_of_trust: "simulated" }), ctx));
    assert.match(simulated.get("Root of trust") ?? "", /^SIMULATED root named by the policy \(not AMD\)/);
    const unattested = new Map(attestationRows(status({ mode: "required", state: "unattested" }), ctx));
    assert.equal(unattested.get("Pinned key (SHA-256 of the TLS key)"), "none pinned");
    assert.equal(unattested.get("Verified at"), "not yet");
  });

  it("has a strict CSP, no script, and escapes what the server sends", () => {
    const html = attestationHtml(status({ mode: "required", state: "failed", code: "attestation.x", message: "<script>alert(1)</script>" }), ctx);
    assert.match(html, /Content-Security-Policy" content="default-src 'none'; style-src 'nonce-n0nce'; img-src 'none'; script-src 'none'/);
    assert.ok(!html.includes("<script>"));
    assert.ok(html.includes("&lt;script&gt;"));
  });
});

describe("errors shown once per cause", () => {
  it("shows a cause once until cleared", () => {
    const notices = new OnceNotices();
    assert.equal(notices.shouldShow("proxy.unauthorized"), true);
    assert.equal(notices.shouldShow("proxy.unauthorized"), false);
    assert.equal(notices.shouldShow("proxy.unreachable"), true);
    notices.clear("proxy.unauthorized");
    assert.equal(notices.shouldShow("proxy.unauthorized"), true);
  });
});

describe("search index in the status bar", () => {
  const base = { mode: "simulated", state: "simulated", measurement: MEASUREMENT };

  it("spins while indexing and says so in the hover, keeping the attestation state", () => {
    const view = renderStatus(status(base, { index: { state: "indexing" } }), running);
    assert.match(view.text, /SIMULATED .*\$\(sync~spin\)$/);
    assert.match(view.tooltip, /Search index: indexing the workspace/);
    assert.equal(view.colour, "warning");
  });

  it("counts files and chunks when ready, and names the code when stopped", () => {
    const ready = renderStatus(status(base, { index: { state: "ready", files: 12, chunks: 80, pending: 0 } }), running);
    assert.ok(!ready.text.includes("sync~spin"));
    assert.match(ready.tooltip, /Search index: 12 files, 80 chunks\./);
    const stopped = renderStatus(status(base, { index: { state: "error", code: "attestation.measurement_mismatch" } }), running);
    assert.match(stopped.tooltip, /stopped \(attestation\.measurement_mismatch\)/);
  });

  it("says nothing about search when it is off", () => {
    const view = renderStatus(status(base, { index: { state: "off" } }), running);
    assert.ok(!view.tooltip.includes("Search index"));
  });
});
