/**
 * The chat panel: a webview beside the editor that shows chat answers as they stream
 * (`cube/chatDelta`), the final answer (`cube/chatResult`), one thread per chatId with follow-up
 * questions, and "Apply" / "Copy" on each code block. Apply goes through cube-lsp's
 * `cube.chat.apply`, so the edit comes back as a change to confirm (VS Code's Refactor Preview).
 *
 * A WebviewPanel beside the editor rather than a WebviewView in a side bar: the answer sits next to
 * the code it is about, as the attestation page does, and no view container is contributed.
 * The page runs one script (by nonce) under `default-src 'none'`; all markdown is rendered here by
 * chatThread.ts (no raw HTML from the model, nothing remote).
 */
import * as crypto from "node:crypto";
import * as vscode from "vscode";
import { ExecuteCommandRequest, type LanguageClient } from "vscode-languageclient/node";
import {
  type ChatRange,
  EDIT_ACTIONS,
  SERVER_APPLY_COMMAND,
  SERVER_CHAT_COMMAND,
  ThreadStore,
  escapeHtml,
  isChatDelta,
  isChatResult,
  parseWebviewMessage,
  threadHtml,
  threadsHtml,
} from "./chatThread";

/** What one `cube.chat` run is about. */
export interface ChatRequest {
  action: string;
  uri: string;
  range: ChatRange;
  version?: number;
  instruction?: string;
  chatId?: string;
}

/** Re-render a streaming thread at most this often (ms): a delta per token would re-render per token. */
const RENDER_EVERY_MS = 50;

/** The chat panel and its threads; one per activation. */
export class ChatPanel implements vscode.Disposable {
  readonly store = new ThreadStore();
  private panel: vscode.WebviewPanel | undefined;
  private ready = false;
  private readonly dirty = new Set<string>();
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly client: () => LanguageClient | undefined,
    private readonly output: vscode.LogOutputChannel,
  ) {}

  /** `cube/chatDelta`: a piece of a streaming answer. Edit actions stream into the panel only when it asked. */
  onDelta(params: unknown): void {
    if (!isChatDelta(params) || (EDIT_ACTIONS.has(params.action) && !this.store.get(params.chatId))) {
      return;
    }
    const isNew = !this.store.get(params.chatId);
    this.store.delta(params);
    if (isNew) {
      this.show();
    }
    this.changed(params.chatId);
  }

  /** `cube/chatResult`: the whole prose answer and what it is about. */
  onResult(params: unknown): void {
    if (!isChatResult(params)) {
      return;
    }
    const isNew = !this.store.get(params.chatId);
    this.store.result(params);
    if (isNew) {
      this.show();
    }
    this.changed(params.chatId);
  }

  /** Show the panel beside the editor, keeping the focus where it is. */
  show(): void {
    if (this.panel) {
      this.panel.reveal(undefined, true);
      return;
    }
    const panel = vscode.window.createWebviewPanel(
      "cube.chat",
      "Cube Chat",
      { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true },
      { enableScripts: true, enableCommandUris: false, enableForms: true, localResourceRoots: [] },
    );
    this.panel = panel;
    this.ready = false;
    panel.webview.html = pageHtml(panel.webview.cspSource, crypto.randomBytes(16).toString("base64"));
    panel.webview.onDidReceiveMessage((message: unknown) => void this.handle(message));
    // A hidden webview is torn down; shown again, its script loads afresh and says "ready".
    panel.onDidChangeViewState(() => {
      if (!panel.visible) {
        this.ready = false;
      }
    });
    panel.onDidDispose(() => {
      this.panel = undefined;
      this.ready = false;
    });
  }

  /**
   * Run cube.chat for a prose action as a thread of the panel (a new one, or `request.chatId`'s), and
   * an edit action with no thread (cube-lsp applies it; its Refactor Preview is the answer).
   */
  async run(request: ChatRequest, question: string, title: string): Promise<void> {
    if (EDIT_ACTIONS.has(request.action)) {
      const result = await this.execute(SERVER_CHAT_COMMAND, request).catch((error: unknown) => {
        void vscode.window.showErrorMessage(`${title}: ${errorMessage(error)}`);
        return undefined;
      });
      this.output.info(`cube: ${request.action}: ${JSON.stringify(summary(result))}`);
      // cube-lsp warns itself when it applies nothing for a reason; applied and discarded are said here.
      const outcome = result as { applied?: unknown; reason?: unknown } | undefined;
      if (outcome?.applied === true || outcome?.reason === "discarded") {
        vscode.window.setStatusBarMessage(`${title}: ${outcome.applied === true ? "applied" : "discarded"}`, 10000);
      }
      return;
    }
    const chatId = request.chatId ?? crypto.randomUUID();
    this.store.ask({ chatId, title, uri: request.uri, version: request.version, range: request.range }, question);
    this.show();
    this.changed(chatId);
    try {
      const result = (await this.execute(SERVER_CHAT_COMMAND, { ...request, chatId })) as { answer?: unknown } | undefined;
      // cube/chatResult normally ended the turn already; this covers a server that only answers.
      this.store.finish(chatId, undefined, typeof result?.answer === "string" ? result.answer : undefined);
    } catch (error) {
      this.store.fail(chatId, `The question failed: ${errorMessage(error)}`);
    }
    this.changed(chatId);
  }

  /** A follow-up question in thread `chatId`: cube-lsp keeps the thread's history by that id. */
  async followUp(chatId: string, text: string): Promise<void> {
    const thread = this.store.get(chatId);
    if (!thread?.range) {
      return;
    }
    await this.run({ action: "ask", uri: thread.uri, range: thread.range, chatId, instruction: text }, text, thread.title);
  }

  /** Put code block `block` of turn `turn` over the thread's range, through cube-lsp's confirmation. */
  async apply(chatId: string, turn: number, block: number): Promise<void> {
    const thread = this.store.get(chatId);
    const code = this.store.block(chatId, turn, block);
    if (!thread || !code || thread.version === undefined || !thread.range) {
      return;
    }
    const args = { uri: thread.uri, version: thread.version, range: thread.range, code: code.code, title: "Cube: Apply" };
    let note: string;
    try {
      const result = (await this.execute(SERVER_APPLY_COMMAND, args)) as { applied?: unknown; reason?: unknown } | undefined;
      note = result?.applied === true ? "Applied." : `Not applied: ${typeof result?.reason === "string" ? result.reason : "the editor refused it"}.`;
    } catch (error) {
      note = `Not applied: ${errorMessage(error)}`;
    }
    this.store.note(chatId, turn, note);
    this.changed(chatId);
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.panel?.dispose();
  }

  private async handle(raw: unknown): Promise<void> {
    const message = parseWebviewMessage(raw);
    if (!message) {
      return;
    }
    switch (message.type) {
      case "ready":
        this.ready = true;
        this.dirty.clear();
        await this.post({ type: "all", html: threadsHtml(this.store.list()) });
        return;
      case "followUp":
        return this.followUp(message.chatId, message.text);
      case "apply":
        return this.apply(message.chatId, message.turn, message.block);
      case "copy": {
        const code = this.store.block(message.chatId, message.turn, message.block);
        if (code) {
          await vscode.env.clipboard.writeText(code.code);
          vscode.window.setStatusBarMessage("Cube: code copied", 3000);
        }
        return;
      }
    }
  }

  private async execute(command: string, args: object): Promise<unknown> {
    const client = this.client();
    if (!client?.isRunning()) {
      throw new Error("cube-lsp is not running (see Cube: Show Log)");
    }
    return client.sendRequest(ExecuteCommandRequest.type, { command, arguments: [args] });
  }

  /** Re-render thread `chatId` soon (coalesced while it streams). */
  private changed(chatId: string): void {
    this.dirty.add(chatId);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, RENDER_EVERY_MS);
  }

  private async flush(): Promise<void> {
    if (!this.ready) {
      return; // "ready" sends everything
    }
    const ids = [...this.dirty];
    this.dirty.clear();
    for (const chatId of ids) {
      const thread = this.store.get(chatId);
      if (thread) {
        await this.post({ type: "thread", chatId, html: threadHtml(thread) });
      }
    }
  }

  private async post(message: object): Promise<void> {
    await this.panel?.webview.postMessage(message);
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function summary(result: unknown): unknown {
  const r = result as { applied?: unknown; reason?: unknown } | undefined;
  return { applied: r?.applied, reason: r?.reason };
}

/** The page: a strict CSP, styles and one script by nonce, and a container the script fills. */
export function pageHtml(cspSource: string, nonce: string): string {
  const csp = [
    "default-src 'none'",
    `style-src ${cspSource} 'nonce-${nonce}'`,
    `script-src 'nonce-${nonce}'`,
    "img-src 'none'",
    "form-action 'none'",
  ].join("; ");
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${escapeHtml(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Cube Chat</title>
<style nonce="${nonce}">
  body { font-family: var(--vscode-font-family); font-size: var(--vscode-font-size); color: var(--vscode-foreground); padding: 0 12px; }
  .thread { border-bottom: 1px solid var(--vscode-panel-border); padding: 8px 0 12px; }
  h2 { font-size: 1.1em; margin: 4px 0 8px; }
  h2 .file { font-weight: normal; opacity: 0.7; }
  .question { font-weight: bold; margin: 8px 0 4px; }
  .question::before { content: "> "; opacity: 0.6; }
  .state { opacity: 0.7; font-style: italic; }
  .note { opacity: 0.85; }
  .note.error { color: var(--vscode-errorForeground); opacity: 1; }
  code { font-family: var(--vscode-editor-font-family); }
  pre { background: var(--vscode-textCodeBlock-background); padding: 8px; overflow-x: auto; margin: 0; }
  .code { margin: 8px 0; }
  .bar { display: flex; gap: 6px; margin-top: 4px; }
  button { background: var(--vscode-button-background); color: var(--vscode-button-foreground); border: none; padding: 3px 10px; cursor: pointer; }
  button:hover { background: var(--vscode-button-hoverBackground); }
  button:disabled { opacity: 0.5; cursor: default; }
  .follow-up { display: flex; gap: 6px; margin-top: 8px; }
  .follow-up input { flex: 1; background: var(--vscode-input-background); color: var(--vscode-input-foreground); border: 1px solid var(--vscode-input-border, transparent); padding: 3px 6px; }
</style>
</head>
<body>
<main id="threads"></main>
<script nonce="${nonce}">
(function () {
  const vscode = acquireVsCodeApi();
  const root = document.getElementById("threads");
  function fragment(html) {
    const holder = document.createElement("div");
    holder.innerHTML = html;
    return holder.firstElementChild;
  }
  window.addEventListener("message", (event) => {
    const message = event.data;
    if (message.type === "all") {
      root.innerHTML = message.html;
    } else if (message.type === "thread") {
      const fresh = fragment(message.html);
      const old = [...root.querySelectorAll("section.thread")].find((s) => s.dataset.chat === message.chatId);
      if (old) {
        // Keep what the user is typing in the follow-up box across re-renders.
        const input = old.querySelector(".follow-up input");
        const typed = input ? input.value : "";
        const focused = input !== null && document.activeElement === input;
        old.replaceWith(fresh);
        const next = fresh.querySelector(".follow-up input");
        if (next) { next.value = typed; if (focused) next.focus(); }
      } else {
        const empty = root.querySelector(".empty");
        if (empty) empty.remove();
        root.prepend(fresh);
      }
    }
  });
  root.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    vscode.postMessage({ type: button.dataset.action, chatId: button.dataset.chat, turn: Number(button.dataset.turn), block: Number(button.dataset.block) });
  });
  root.addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const input = form.querySelector("input");
    const text = input.value.trim();
    if (text) {
      vscode.postMessage({ type: "followUp", chatId: form.dataset.chat, text });
      input.value = "";
    }
  });
  vscode.postMessage({ type: "ready" });
})();
</script>
</body>
</html>`;
}
