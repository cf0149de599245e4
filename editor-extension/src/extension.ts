/** Entry point: only activate and deactivate; the parts live in client, commands, session and statusBar. */
import * as vscode from "vscode";
import type { LanguageClient } from "vscode-languageclient/node";
import { ChatPanel } from "./chatPanel";
import { ChatReviewer } from "./chatReviewer";
import { CubeClient } from "./client";
import { offerLocalStack, registerCommands } from "./commands";
import { SessionManager } from "./session";
import { SECTION } from "./settings";
import { StatusBar } from "./statusBar";

/** What activate returns: tests await `ready` (the first start attempt), never a timer. */
export interface CubeApi {
  readonly client: LanguageClient | undefined;
  readonly ready: Promise<void>;
  readonly statusText: () => string;
}

let cube: CubeClient | undefined;

export function activate(context: vscode.ExtensionContext): CubeApi {
  const output = vscode.window.createOutputChannel("Cube", { log: true });
  const status = new StatusBar();
  const session = new SessionManager(context.secrets, () => vscode.workspace.getConfiguration(SECTION).get<string | null>("authUrl"), output);
  const client = new CubeClient(context.extensionUri, output, status, session);
  cube = client;
  const chat = new ChatPanel(() => client.client, output);
  client.chat = chat;
  const reviewer = new ChatReviewer(output);
  client.reviewer = reviewer;
  const ctx = { extension: context, client, session, status, output, chat, reviewer, views: {} };
  context.subscriptions.push(output, status, session, client, chat, reviewer, ...registerCommands(ctx));
  const ready = (async () => {
    await session.load();
    await client.start();
    void offerLocalStack(ctx);
  })();
  return {
    get client() {
      return client.client;
    },
    ready,
    statusText: () => status.text,
  };
}

export function deactivate(): Thenable<void> | undefined {
  const client = cube;
  cube = undefined;
  return client?.stop();
}
