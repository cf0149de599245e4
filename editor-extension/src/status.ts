/**
 * Renders cube-lsp's `cube/status` notification (see `status_payload` in cube_lsp/server.py) as the
 * status bar item's text, hover and colour. SIMULATED gets the warning colour and the word SIMULATED,
 * so it can never be mistaken for a verified proxy. Pure: no `vscode` import.
 */

/** The `attestation` object of `cube/status` (AttestationStatus.payload in cube_lsp/cube/attested.py). */
export interface AttestationPayload {
  mode: string;
  state: "verified" | "simulated" | "failed" | "unattested" | string;
  measurement?: string | null;
  product?: string | null;
  tcb?: Record<string, number> | null;
  code?: string | null;
  message?: string | null;
  [extra: string]: unknown;
}

/** The params of `cube/status`. */
export interface StatusPayload {
  state: "ready" | "error" | "disabled" | "unconfigured" | string;
  message: string;
  code?: string | null;
  endpoint?: string | null;
  model?: string | null;
  attestation?: AttestationPayload | null;
  /** The search index (SearchService.status in cube_lsp/search/service.py). */
  index?: IndexPayload | null;
}

/** The `index` object of `cube/status`. */
export interface IndexPayload {
  state: "off" | "none" | "indexing" | "ready" | "error" | string;
  files?: number;
  chunks?: number;
  embedded?: number;
  pending?: number;
  code?: string;
}

/** One line for the tooltip about the search index, or "" when search is off. */
export function describeIndex(index: IndexPayload | null | undefined): string {
  if (!index || index.state === "off" || index.state === "none") {
    return "";
  }
  if (index.state === "indexing") {
    return "Search index: indexing the workspace...";
  }
  if (index.state === "error") {
    return `Search index: stopped (${index.code ?? "error"}); search answers from what is indexed.`;
  }
  const pending = index.pending ? `, ${index.pending} chunks waiting for embeddings` : "";
  return `Search index: ${index.files ?? 0} files, ${index.chunks ?? 0} chunks${pending}.`;
}

/** What the extension knows besides the server's last status. */
export interface ClientState {
  /** The server process is up and initialized. */
  running: boolean;
  /** A session is in SecretStorage. */
  signedIn: boolean;
  /** Why the server is not running, when known (e.g. cube-lsp not found). */
  startError?: string;
}

export type StatusColour = "warning" | "error" | undefined;

/** What the status bar item shows. */
export interface StatusView {
  kind: "verified" | "simulated" | "failed" | "error" | "unattested" | "disabled" | "unconfigured" | "notConnected" | "notSignedIn" | "starting";
  text: string;
  tooltip: string;
  colour: StatusColour;
}

const SHORT_MEASUREMENT = 12;

/** The first hex digits of a measurement, enough to tell images apart at a glance. */
export function shortMeasurement(measurement: string | null | undefined): string {
  return measurement ? measurement.slice(0, SHORT_MEASUREMENT) : "?";
}

/** What to do about a failure, by its stable code. */
export function adviceFor(code: string | null | undefined): string {
  if (!code) {
    return "Run Cube: Show Log for details.";
  }
  if (code === "attestation.policy_missing" || code === "attestation.policy_invalid") {
    return "Set `cube.attestation.policy` to a valid policy file (or run Cube: Use Local Stack).";
  }
  if (code.startsWith("attestation.measurement") || code === "attestation.policy_violation") {
    return "The proxy runs an image your policy does not allow: nothing was sent. Check the policy with your operator before changing it.";
  }
  if (code.startsWith("attestation.")) {
    return "The proxy could not prove it runs in a confidential VM: nothing was sent. Run Cube: Show Attestation for details.";
  }
  if (code === "proxy.unauthorized" || code === "proxy.forbidden" || code === "attestation.token_required") {
    return "Run Cube: Sign In (or Cube: Use Local Stack).";
  }
  if (code === "proxy.unreachable" || code === "proxy.timeout" || code === "proxy.tls") {
    return "Is the proxy running and `cube.endpoint` right?";
  }
  if (code.startsWith("settings.")) {
    return "Fix the setting named in the message; defaults apply meanwhile.";
  }
  return "Run Cube: Show Log for details.";
}

/** Turn the last `cube/status` (if any) and the client's own state into the status bar item. */
export function renderStatus(status: StatusPayload | undefined, client: ClientState): StatusView {
  const view = renderAttestation(status, client);
  const index = status && client.running ? describeIndex(status.index) : "";
  if (!index) {
    return view;
  }
  const spinning = status?.index?.state === "indexing" ? " $(sync~spin)" : "";
  return { ...view, text: view.text + spinning, tooltip: `${view.tooltip}\n\n${index}` };
}

function renderAttestation(status: StatusPayload | undefined, client: ClientState): StatusView {
  if (!client.running) {
    if (client.startError) {
      return view("notConnected", "$(debug-disconnect) Cube: not connected", `cube-lsp is not running: ${client.startError}`, "error");
    }
    return view("starting", "$(sync~spin) Cube", "Starting cube-lsp...", undefined);
  }
  if (!status) {
    return view("starting", "$(sync~spin) Cube", "Waiting for cube-lsp's status...", undefined);
  }
  const att = status.attestation ?? undefined;
  const where = status.endpoint ? `\n\nEndpoint: ${status.endpoint}` : "";
  if (status.state === "disabled") {
    return view("disabled", "$(circle-slash) Cube: off", `Completions are switched off (cube.completion.enabled).${where}`, undefined);
  }
  if (status.state === "unconfigured") {
    return view("unconfigured", "$(plug) Cube: not connected", "No proxy configured: set `cube.endpoint` and `cube.domain`, or run Cube: Use Local Stack.", undefined);
  }
  const attFailed = att?.state === "failed";
  const failedCode = attFailed ? (att?.code ?? status.code) : status.code;
  const failedMessage = attFailed ? (att?.message ?? status.message) : status.message;
  // The server marks attestation "failed" when it could not even reach the proxy (proxy.unreachable):
  // that is an error to show with its reason, not a proxy that failed its checks.
  const checkFailed = failedCode ? failedCode.startsWith("attestation.") : attFailed;
  if (checkFailed && (attFailed || status.state === "error")) {
    return view("failed", "$(error) Cube: attestation failed", `Attestation failed: ${failedCode ?? "unknown"}\n\n${failedMessage}\n\n${adviceFor(failedCode)}${where}`, "error");
  }
  if (attFailed && status.state !== "error") {
    return view("error", `$(error) Cube: ${failedCode}`, `${failedCode}: ${failedMessage}\n\n${adviceFor(failedCode)}${where}`, "error");
  }
  if (status.state === "error") {
    if (!client.signedIn && (status.code === "proxy.unauthorized" || status.code === "attestation.token_required")) {
      return view("notSignedIn", "$(account) Cube: sign in", `Not signed in (${status.code}).\n\n${adviceFor(status.code)}${where}`, "warning");
    }
    return view("error", `$(error) Cube: ${status.code ?? "error"}`, `${status.code ?? "error"}: ${status.message}\n\n${adviceFor(status.code)}${where}`, "error");
  }
  if (att?.state === "simulated") {
    return view(
      "simulated",
      `$(warning) Cube: SIMULATED ${shortMeasurement(att.measurement)}`,
      `SIMULATED attestation: the report is signed by a locally generated root, not by AMD. No confidentiality is proven; use it only for development.\n\nMeasurement: ${att.measurement ?? "?"}${where}`,
      "warning",
    );
  }
  if (att?.state === "verified") {
    return view(
      "verified",
      `$(shield) Cube: ${att.product ?? "SEV-SNP"} ${shortMeasurement(att.measurement)}`,
      `Verified AMD SEV-SNP attestation (${att.product ?? "unknown product"}).\n\nMeasurement: ${att.measurement ?? "?"}${where}`,
      undefined,
    );
  }
  if (att?.mode === "off") {
    return view("unattested", "$(unlock) Cube: unattested", `Attestation is off (loopback endpoint only): nothing proves where your code goes.${where}`, "warning");
  }
  const signIn = client.signedIn ? "" : "\n\nNot signed in: the server uses $CUBE_TOKEN if set, else run Cube: Sign In.";
  return view("unattested", "$(shield) Cube: not attested yet", `${att?.message ?? "The first completion attests the proxy."}${signIn}${where}`, undefined);
}

function view(kind: StatusView["kind"], text: string, tooltip: string, colour: StatusColour): StatusView {
  return { kind, text, tooltip, colour };
}

/** Shows each cause once until it is cleared, so an error is not repeated on every keystroke. */
export class OnceNotices {
  private readonly shown = new Set<string>();

  /** True the first time `cause` is seen since it was last cleared. */
  shouldShow(cause: string): boolean {
    if (this.shown.has(cause)) {
      return false;
    }
    this.shown.add(cause);
    return true;
  }

  /** Forget `cause` (or every cause), e.g. after a success. */
  clear(cause?: string): void {
    if (cause === undefined) {
      this.shown.clear();
    } else {
      this.shown.delete(cause);
    }
  }
}
