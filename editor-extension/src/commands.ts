/**
 * The extension's commands, declared in one table so each feature (search, chat) adds its own with
 * a few lines. Each command's id matches `contributes.commands` in package.json.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as vscode from "vscode";
import { attestationHtml } from "./attestationPage";
import { runChatAction } from "./chatCommands";
import type { ChatPanel } from "./chatPanel";
import type { ChatReviewer } from "./chatReviewer";
import { AuthError, sessionFromToken, signInWithPassword } from "./auth";
import { CubeClient } from "./client";
import { LocalStack, clientJsonPath, readLocalStack, shouldOfferLocalStack, stackEndpoint } from "./localStack";
import { searchWorkspace } from "./search";
import { SessionManager } from "./session";
import { SECTION } from "./settings";
import { StatusBar } from "./statusBar";
import manifest from "../package.json";

/** What commands work with. */
export interface CommandContext {
  extension: vscode.ExtensionContext;
  client: CubeClient;
  session: SessionManager;
  status: StatusBar;
  output: vscode.LogOutputChannel;
  chat: ChatPanel;
  reviewer: ChatReviewer;
  /** Open views, reused by the commands that show them. */
  views: { attestation?: vscode.WebviewPanel };
  /** The start-up offer of the local stack is on screen, waiting for an answer. */
  offeringLocalStack?: boolean;
}

/** One command: its id and what it does. */
export interface CubeCommand {
  id: string;
  run(ctx: CommandContext, ...args: unknown[]): unknown;
}

const OFFERED_KEY = "cube.localStackOffered";

/** Every command of the extension. */
export const COMMANDS: CubeCommand[] = [
  { id: "cube.restartServer", run: (ctx) => ctx.client.restart() },
  { id: "cube.showLog", run: (ctx) => ctx.output.show() },
  { id: "cube.signIn", run: (ctx) => signIn(ctx) },
  { id: "cube.signOut", run: (ctx) => signOut(ctx) },
  { id: "cube.useLocalStack", run: (ctx) => useLocalStack(ctx, true) },
  { id: "cube.showAttestation", run: (ctx) => showAttestation(ctx) },
  { id: "cube.searchWorkspace", run: (ctx) => searchWorkspace(ctx) },
  { id: "cube.openChat", run: (ctx) => ctx.chat.show() },
  { id: "cube.chatExplain", run: (ctx) => runChatAction(ctx.chat, "explain") },
  { id: "cube.chatDocument", run: (ctx) => runChatAction(ctx.chat, "document") },
  { id: "cube.chatRefactor", run: (ctx) => runChatAction(ctx.chat, "refactor") },
  { id: "cube.chatTests", run: (ctx) => runChatAction(ctx.chat, "tests") },
  { id: "cube.chatAsk", run: (ctx) => runChatAction(ctx.chat, "ask") },
  { id: "cube.acceptReview", run: (ctx, uri) => ctx.reviewer.decide(uri, true) },
  { id: "cube.rejectReview", run: (ctx, uri) => ctx.reviewer.decide(uri, false) },
];

/** Register `commands` (COMMANDS by default). */
export function registerCommands(ctx: CommandContext, commands: CubeCommand[] = COMMANDS): vscode.Disposable[] {
  return commands.map((command) => vscode.commands.registerCommand(command.id, (...args: unknown[]) => command.run(ctx, ...args)));
}

/** Where `cube-stack up` writes client.json on this machine. */
export function localClientJson(): string {
  return clientJsonPath(process.platform, process.env, os.homedir());
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
}

/**
 * At start-up, when a local stack runs and the settings do not point at it yet, offer to use it:
 * once per user. Any answer counts, and so does running Cube: Use Local Stack, before or while the
 * offer is shown (the command puts the offer away then).
 */
export async function offerLocalStack(ctx: CommandContext): Promise<void> {
  const stack = readLocalStack(localClientJson(), readText);
  const configured = vscode.workspace.getConfiguration(SECTION).get("endpoint");
  if (!shouldOfferLocalStack(stack, configured, ctx.extension.globalState.get<boolean>(OFFERED_KEY) === true)) {
    return;
  }
  ctx.offeringLocalStack = true;
  const offer = vscode.window.showInformationMessage(
    `Cube: a local cube-stack is running (${String(stackEndpoint(stack))}). Use it for completions?`,
    "Use Local Stack",
    "Not now",
  );
  await ctx.extension.globalState.update(OFFERED_KEY, true);
  const choice = await offer;
  const stillOffered = ctx.offeringLocalStack;
  ctx.offeringLocalStack = false;
  // Not when the command was run meanwhile: the user chose that way already.
  if (choice === "Use Local Stack" && stillOffered) {
    await applyLocalStack(ctx, stack);
  }
}

async function useLocalStack(ctx: CommandContext, explicit: boolean): Promise<void> {
  const file = localClientJson();
  const stack = readLocalStack(file, readText);
  if (!stack) {
    if (explicit) {
      void vscode.window.showWarningMessage(`Cube: no local stack found (${file} is missing or unreadable). Start one with \`cube-stack up\`.`);
    }
    return;
  }
  // The user chose: the start-up offer is not made any more (also when the stack's port changes),
  // and one on screen now is put away (toasts cannot be closed one by one; it stays in the centre).
  const remembered = ctx.extension.globalState.update(OFFERED_KEY, true); // read back at once
  if (ctx.offeringLocalStack) {
    ctx.offeringLocalStack = false;
    await vscode.commands.executeCommand("notifications.hideToasts").then(undefined, () => undefined);
  }
  await remembered;
  await applyLocalStack(ctx, stack);
}

/** Write the stack's settings (user scope) and keep its token in SecretStorage; push once. */
async function applyLocalStack(ctx: CommandContext, stack: LocalStack): Promise<void> {
  const known = new Set(manifest.contributes.configuration.flatMap((group) => Object.keys(group.properties)));
  const config = vscode.workspace.getConfiguration(SECTION);
  await ctx.client.batch(async () => {
    if (stack.token) {
      await ctx.session.set(sessionFromToken(stack.token, "localStack"));
    }
    for (const [key, value] of stack.settings) {
      if (known.has(`${SECTION}.${key}`)) {
        await config.update(key, value, vscode.ConfigurationTarget.Global);
      } else {
        ctx.output.warn(`cube: local stack setting ${key} has no cube.* counterpart; skipped`);
      }
    }
  });
  ctx.output.info(`cube: using the local stack from ${stack.file}`);
  void vscode.window.showInformationMessage("Cube: using the local cube-stack (SIMULATED attestation: for development only).");
}

async function signIn(ctx: CommandContext): Promise<void> {
  const choice = await vscode.window.showQuickPick(
    [
      { label: "Email or username and password", id: "password" },
      { label: "Paste a personal access token", id: "token" },
    ],
    { title: "Cube: Sign In", ignoreFocusOut: true },
  );
  if (!choice) {
    return;
  }
  if (choice.id === "token") {
    const token = await vscode.window.showInputBox({ title: "Cube: personal access token", password: true, ignoreFocusOut: true });
    if (token?.trim()) {
      await ctx.session.set(sessionFromToken(token));
      void vscode.window.showInformationMessage("Cube: signed in with a personal access token.");
    }
    return;
  }
  const config = vscode.workspace.getConfiguration(SECTION);
  let authUrl = config.get<string | null>("authUrl");
  if (!authUrl) {
    authUrl = await vscode.window.showInputBox({
      title: "Cube: auth service URL (saved as cube.authUrl)",
      placeHolder: "https://auth.example.com",
      ignoreFocusOut: true,
      validateInput: (v) => (/^https?:\/\/\S+$/.test(v) ? undefined : "an http:// or https:// URL"),
    });
    if (!authUrl) {
      return;
    }
    await config.update("authUrl", authUrl, vscode.ConfigurationTarget.Global);
  }
  const username = await vscode.window.showInputBox({ title: "Cube: email or username", ignoreFocusOut: true });
  if (!username) {
    return;
  }
  const password = await vscode.window.showInputBox({ title: "Cube: password", password: true, ignoreFocusOut: true });
  if (!password) {
    return;
  }
  try {
    const session = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: "Cube: signing in..." },
      () => signInWithPassword(fetch, authUrl, username, password),
    );
    await ctx.session.set(session);
    void vscode.window.showInformationMessage("Cube: signed in.");
  } catch (error) {
    const message = error instanceof AuthError ? error.message : "sign-in failed; see Cube: Show Log.";
    ctx.output.warn(`cube: sign-in failed (${error instanceof AuthError ? error.code : "unexpected"})`);
    void vscode.window.showErrorMessage(`Cube: ${message}`);
  }
}

async function signOut(ctx: CommandContext): Promise<void> {
  await ctx.session.clear();
  void vscode.window.showInformationMessage("Cube: signed out; the token was removed from this machine's secret storage.");
}

function showAttestation(ctx: CommandContext): void {
  let panel = ctx.views.attestation;
  if (!panel) {
    const created = vscode.window.createWebviewPanel("cube.attestation", "Cube Attestation", vscode.ViewColumn.Beside, {
      enableScripts: false,
      enableCommandUris: false,
      localResourceRoots: [],
    });
    // The page follows the status while it is open (e.g. turns to failed when the proxy goes away).
    const follow = ctx.status.onDidUpdate(() => renderAttestation(ctx, created));
    created.onDidDispose(() => {
      follow.dispose();
      ctx.views.attestation = undefined;
    });
    ctx.views.attestation = panel = created;
  }
  renderAttestation(ctx, panel);
  panel.reveal();
}

function renderAttestation(ctx: CommandContext, panel: vscode.WebviewPanel): void {
  const { status, receivedAt } = ctx.status.last;
  panel.webview.html = attestationHtml(status, {
    policyFile: vscode.workspace.getConfiguration(SECTION).get<string | null>("attestation.policy"),
    receivedAt,
    nonce: crypto.randomBytes(16).toString("base64"),
  });
}
