/**
 * The read-only HTML of `Cube: Show Attestation`: every attestation field cube-lsp reports in
 * `cube/status`, under a Content-Security-Policy that allows no script and nothing remote.
 * Pure: no `vscode` import.
 */
import type { StatusPayload } from "./status";

/** What the page shows besides the server's status. */
export interface PageContext {
  /** The policy file the server was given (`cube.attestation.policy`). */
  policyFile: string | null | undefined;
  /** When the extension received this status (ISO 8601). */
  receivedAt: string | undefined;
  /** A fresh random nonce for the page's one inline style block. */
  nonce: string;
}

const KNOWN = new Set([
  "mode",
  "state",
  "measurement",
  "product",
  "tcb",
  "code",
  "message",
  "root_of_trust",
  "root_fingerprint",
  "signer",
  "pinned_key_sha256",
  "policy_file",
  "verified_at",
]);

/** Escape text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c);
}

/** The rows of the page, label and value, in display order (also what tests check). */
export function attestationRows(status: StatusPayload | undefined, ctx: PageContext): [string, string][] {
  const att = status?.attestation ?? undefined;
  const simulated = att?.state === "simulated";
  const result =
    att?.state === "verified" || simulated
      ? "passed"
      : att?.state === "failed"
        ? `failed: ${att.code ?? "unknown"}`
        : "not checked yet";
  const rows: [string, string][] = [
    ["State", att ? (simulated ? "SIMULATED (not AMD-signed; no confidentiality proven)" : att.state) : "no status from cube-lsp yet"],
    ["Simulated", simulated ? "YES" : "no"],
    ["Endpoint", status?.endpoint ?? "not set"],
    ["Mode", att?.mode ?? "?"],
    ["Product", att?.product ?? "?"],
    ["Measurement", att?.measurement ?? "?"],
    ["TCB", formatTcb(att?.tcb)],
    ["Policy file", text(att?.policy_file) ?? ctx.policyFile ?? "not set"],
    ["Policy result", result],
    ["Root of trust", rootOfTrust(att?.root_of_trust, att?.root_fingerprint)],
    ["Signed by", text(att?.signer) ?? "?"],
    ["Pinned key (SHA-256 of the TLS key)", text(att?.pinned_key_sha256) ?? "none pinned"],
    ["Verified at", text(att?.verified_at) ?? "not yet"],
    ["Message", att?.message ?? ""],
  ];
  if (att?.code) {
    rows.push(["Failed check", att.code]);
  }
  // Fields a newer server adds appear without a change here.
  for (const [key, value] of Object.entries(att ?? {})) {
    if (!KNOWN.has(key) && value !== null && value !== undefined) {
      rows.push([key, typeof value === "string" ? value : JSON.stringify(value)]);
    }
  }
  rows.push(["Status received", ctx.receivedAt ?? "never"]);
  return rows;
}

/** The whole page. */
export function attestationHtml(status: StatusPayload | undefined, ctx: PageContext): string {
  const simulated = status?.attestation?.state === "simulated";
  const body = attestationRows(status, ctx)
    .map(([label, value]) => `<tr><th>${escapeHtml(label)}</th><td><code>${escapeHtml(value)}</code></td></tr>`)
    .join("\n");
  const banner = simulated
    ? `<p class="simulated">SIMULATED attestation: signed by a locally generated root, for development only.</p>`
    : "";
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'nonce-${ctx.nonce}'; img-src 'none'; script-src 'none'; form-action 'none'; base-uri 'none'">
<title>Cube attestation</title>
<style nonce="${ctx.nonce}">
body { font-family: var(--vscode-font-family); color: var(--vscode-foreground); }
th { text-align: left; padding-right: 1em; vertical-align: top; }
td code { word-break: break-all; }
.simulated { background: var(--vscode-inputValidation-warningBackground); padding: 0.5em; font-weight: bold; }
</style>
</head>
<body>
<h1>Cube attestation</h1>
${banner}
<table>
${body}
</table>
</body>
</html>
`;
}

function text(value: unknown): string | undefined {
  return typeof value === "string" && value ? value : undefined;
}

function rootOfTrust(kind: unknown, fingerprint: unknown): string {
  const fp = text(fingerprint);
  const suffix = fp ? `, SHA-256 ${fp}` : "";
  if (kind === "amd") {
    return `AMD root key (ARK) pinned in cube-lsp${suffix}`;
  }
  if (kind === "simulated") {
    return `SIMULATED root named by the policy (not AMD)${suffix}`;
  }
  return "?";
}

function formatTcb(tcb: Record<string, number> | null | undefined): string {
  if (!tcb) {
    return "?";
  }
  return Object.entries(tcb)
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
}
