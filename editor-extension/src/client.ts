/**
 * Builds the server and client options and runs cube-lsp over stdio with vscode-languageclient:
 * settings go out as initializationOptions, as the answer to `workspace/configuration` and as
 * `workspace/didChangeConfiguration` pushes (so they apply with no restart); `cube/status` goes to
 * the status bar. The token is in those messages only, never in a file.
 */
import * as fs from "node:fs";
import * as vscode from "vscode";
import {
  CancellationToken,
  CloseAction,
  DidChangeConfigurationNotification,
  ErrorAction,
  LanguageClient,
  LanguageClientOptions,
  RevealOutputChannelOn,
  ServerOptions,
  State,
  TransportKind,
} from "vscode-languageclient/node";
import type { ChatReviewer } from "./chatReviewer";
import { CHAT_DELTA_NOTIFICATION, CHAT_RESULT_NOTIFICATION } from "./chatThread";
import { ServerCommand, resolveServerCommand } from "./serverCommand";
import { SessionManager } from "./session";
import { SECTION, completionEnabledFor, toServerSettings } from "./settings";
import { OnceNotices, StatusPayload } from "./status";
import { StatusBar } from "./statusBar";

export const STATUS_NOTIFICATION = "cube/status";
/**
 * The README whose "Install cube-lsp" section the "How to install" action opens (offline): vsce
 * stores it as readme.md in the .vsix, a checkout has README.md.
 */
export const INSTALL_DOCS = ["readme.md", "README.md"];
const MAX_RESTARTS = 3;

/**
 * A LanguageClient whose own error pop-ups go to the log only: the extension shows one message per
 * cause itself (start failure with "How to install", a crash that was not restarted), and the
 * library's forced "couldn't create connection" would repeat it with a stack trace.
 */
class CubeLanguageClient extends LanguageClient {
  override error(message: string, data?: unknown, _showNotification?: boolean | "force"): void {
    super.error(message, data, false);
  }
}

/** Starts, restarts and stops the language client; one instance per activation. */
export class CubeClient implements vscode.Disposable {
  private current: LanguageClient | undefined;
  /** The command the current client was started with (command and arguments), to skip no-op restarts. */
  private startedWith: string | undefined;
  private restarts = 0;
  private queue: Promise<void> = Promise.resolve();
  private waiting: Promise<void> | undefined;
  private batching = false;
  private readonly notices = new OnceNotices();
  private readonly subscriptions: vscode.Disposable[] = [];
  /** Where streamed and final chat answers go (the chat panel). */
  chat: { onDelta(params: unknown): void; onResult(params: unknown): void } | undefined;
  /** Where chat edits to confirm go (a diff with Accept / Reject); unset: VS Code's Refactor Preview. */
  reviewer: ChatReviewer | undefined;

  constructor(
    private readonly extensionUri: vscode.Uri,
    readonly output: vscode.LogOutputChannel,
    private readonly status: StatusBar,
    private readonly session: SessionManager,
  ) {
    this.subscriptions.push(
      vscode.workspace.onDidChangeConfiguration((event) => {
        if (event.affectsConfiguration("cube.server")) {
          void this.restartIfCommandChanged();
        } else if (event.affectsConfiguration(SECTION)) {
          void this.pushSettings();
        }
      }),
      session.onDidChange(() => {
        this.status.setClient({ signedIn: session.signedIn });
        void this.pushSettings();
      }),
    );
  }

  /** The running client, if any (the e2e test reads it from activate's result). */
  get client(): LanguageClient | undefined {
    return this.current;
  }

  /** The settings cube-lsp gets now, token included. */
  serverSettings(): Record<string, unknown> {
    return toServerSettings(vscode.workspace.getConfiguration(SECTION), this.session.accessToken);
  }

  /** Start cube-lsp; on failure show one message with the install action and keep the extension working. */
  start(): Promise<void> {
    return this.serialized(() => this.startNow());
  }

  /**
   * Run starts and restarts one after the other: a settings change and "Cube: Restart Server" may
   * both restart, and overlapping ones would dispose each other's client mid-start (reported as a
   * start failure with "How to install"). A restart asked for while one waits is that one.
   */
  private serialized(step: () => Promise<void>, coalesce = false): Promise<void> {
    if (coalesce && this.waiting) {
      return this.waiting;
    }
    const run = this.queue.then(async () => {
      if (this.waiting === run) {
        this.waiting = undefined;
      }
      await step();
    });
    if (coalesce) {
      this.waiting = run;
    }
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async startNow(): Promise<void> {
    this.status.setClient({ running: false, startError: undefined, signedIn: this.session.signedIn });
    const command = await this.resolveCommand();
    if (!command) {
      this.reportStartFailure("cube-lsp was not found (not in `cube.server.command`, on PATH, or in the Python extension's interpreter).");
      return;
    }
    this.output.info(`cube: starting ${command.command} (${command.source})`);
    const client = this.build(command);
    this.current = client;
    this.startedWith = commandKey(command);
    try {
      await client.start();
      this.restarts = 0;
      this.notices.clear();
      this.status.setClient({ running: true, startError: undefined });
      // Settings written while the server was starting (Use Local Stack right after a restart) missed
      // the initialize request; send what holds now (cube-lsp ignores a push that changes nothing).
      await this.pushSettings();
    } catch (error) {
      this.current = undefined;
      this.startedWith = undefined;
      // The reason's first line only: a spawn error names the command, never code or tokens.
      const reason = String(error instanceof Error ? error.message : error).split("\n", 1)[0];
      this.output.error(`cube: cube-lsp did not start: ${reason}`);
      const what = reason.includes(command.command) ? "" : ` (${command.command})`;
      this.reportStartFailure(`cube-lsp did not start${what}: ${reason}`);
      await client.dispose().catch(() => undefined);
    }
  }

  /**
   * A `cube.server.*` setting changed: restart only when it changes the command that runs, so that the
   * same value written to a second settings scope (user and machine) does not restart twice.
   */
  private async restartIfCommandChanged(): Promise<void> {
    const command = await this.resolveCommand();
    if (this.current && command && commandKey(command) === this.startedWith) {
      return;
    }
    await this.restart();
  }

  /** Stop and start again (re-resolving the command, so a fixed install is picked up). */
  restart(): Promise<void> {
    return this.serialized(async () => {
      await this.stop();
      await this.startNow();
    }, true);
  }

  /** Stop the server. */
  async stop(): Promise<void> {
    const client = this.current;
    this.current = undefined;
    this.startedWith = undefined;
    this.status.setClient({ running: false });
    if (client) {
      // dispose, not just stop: it also drops the commands the client registered for the server
      // (cube.acceptCompletion), so the next client can register them again.
      await client.dispose().catch(() => undefined);
    }
  }

  /** Send the current settings to a running server. */
  async pushSettings(): Promise<void> {
    const client = this.current;
    if (this.batching) {
      return;
    }
    if (client?.isRunning()) {
      try {
        await client.sendNotification(DidChangeConfigurationNotification.type, { settings: { [SECTION]: this.serverSettings() } });
      } catch (error) {
        this.output.warn(`cube: settings not sent (${error instanceof Error ? error.name : "error"})`);
      }
    }
  }

  /** Run `change` (several settings updates) and push the result once, not one half-changed state per key. */
  async batch(change: () => Promise<void>): Promise<void> {
    this.batching = true;
    try {
      await change();
    } finally {
      this.batching = false;
    }
    await this.pushSettings();
  }

  dispose(): void {
    for (const sub of this.subscriptions) {
      sub.dispose();
    }
    void this.stop();
  }

  private reportStartFailure(message: string): void {
    this.status.setClient({ running: false, startError: message });
    if (!this.notices.shouldShow(message)) {
      return; // already said since the last successful start; the status bar keeps saying it
    }
    void vscode.window.showErrorMessage(`Cube: ${message}`, "How to install", "Show Log").then((choice) => {
      if (choice === "How to install") {
        const doc = INSTALL_DOCS.map((name) => vscode.Uri.joinPath(this.extensionUri, name)).find((uri) => fs.existsSync(uri.fsPath));
        if (doc) {
          void vscode.commands.executeCommand("markdown.showPreview", doc);
        }
      } else if (choice === "Show Log") {
        this.output.show();
      }
    });
  }

  private async resolveCommand(): Promise<ServerCommand | undefined> {
    const config = vscode.workspace.getConfiguration(SECTION);
    return resolveServerCommand({
      configured: config.get<string | null>("server.command"),
      args: config.get<string[]>("server.args") ?? [],
      pathEnv: process.env.PATH,
      platform: process.platform,
      isExecutable: (file) => {
        try {
          fs.accessSync(file, fs.constants.X_OK);
          return fs.statSync(file).isFile();
        } catch {
          return false;
        }
      },
      pythonCommand: () => pythonInterpreter(),
    });
  }

  private build(command: ServerCommand): LanguageClient {
    // eslint-disable-next-line prefer-const -- the error handler refers to the client it belongs to
    let client: LanguageClient;
    let started = false;
    const serverOptions: ServerOptions = { command: command.command, args: command.args, transport: TransportKind.stdio };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
      outputChannel: this.output,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      initializationOptions: () => ({ [SECTION]: this.serverSettings() }),
      initializationFailedHandler: () => false,
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue, handled: true }),
        closed: () => {
          if (this.current !== client || !started) {
            // Stopped by us, or failed during start: start() reports that once.
            return { action: CloseAction.DoNotRestart, handled: true };
          }
          this.status.setClient({ running: false, startError: "cube-lsp stopped" });
          if (this.restarts < MAX_RESTARTS) {
            this.restarts += 1;
            return { action: CloseAction.Restart, handled: true };
          }
          this.reportStartFailure("cube-lsp stopped and was not restarted; run Cube: Restart Server.");
          return { action: CloseAction.DoNotRestart, handled: true };
        },
      },
      middleware: {
        workspace: {
          configuration: (params, token, next) => {
            const wanted = params.items.map((item) => item.section === SECTION);
            if (wanted.every((x) => x)) {
              return wanted.map(() => this.serverSettings());
            }
            return next(params, token);
          },
          // Chat edits (annotated `cube.chat`) are reviewed in a diff; every other edit as usual.
          handleApplyEdit: (params, next) => (this.reviewer ? this.reviewer.handleApplyEdit(params, next) : next(params, CancellationToken.None)),
        },
        provideInlineCompletionItems: (document, position, context, token, next) => {
          if (!completionEnabledFor(vscode.workspace.getConfiguration(SECTION, document), document.languageId)) {
            return null;
          }
          return next(document, position, context, token);
        },
      },
    };
    client = new CubeLanguageClient("cube", "Cube", serverOptions, clientOptions);
    client.onDidChangeState((event) => {
      if (event.newState === State.Running) {
        started = true;
      }
    });
    client.onNotification(STATUS_NOTIFICATION, (params: StatusPayload) => {
      this.status.setClient({ running: true, startError: undefined });
      this.status.update(params);
    });
    // Chat answers: declared, so cube-lsp streams them here (cube/chatDelta) and sends prose answers
    // as cube/chatResult instead of opening a raw .md file; the chat panel shows both.
    client.registerFeature({
      fillClientCapabilities: (capabilities) => {
        capabilities.experimental = { ...(capabilities.experimental ?? {}), cubeChatResult: true, cubeChatStream: true };
      },
      initialize: () => undefined,
      getState: () => ({ kind: "static" }),
      clear: () => undefined,
    });
    client.onNotification(CHAT_DELTA_NOTIFICATION, (params: unknown) => this.chat?.onDelta(params));
    client.onNotification(CHAT_RESULT_NOTIFICATION, (params: unknown) => this.chat?.onResult(params));
    return client;
  }
}

function commandKey(command: ServerCommand): string {
  return JSON.stringify([command.command, ...command.args]);
}

/** The Python extension's interpreter command, when that extension is installed and has one. */
async function pythonInterpreter(): Promise<string[] | undefined> {
  const extension = vscode.extensions.getExtension("ms-python.python");
  if (!extension) {
    return undefined;
  }
  const resource = vscode.workspace.workspaceFolders?.[0]?.uri;
  try {
    const api = (await extension.activate()) as PythonExtensionApi | undefined;
    // The environments API first (current), then the older execution details (still exported).
    const environments = api?.environments;
    if (environments) {
      const env = await environments.resolveEnvironment(environments.getActiveEnvironmentPath(resource));
      const executable = env?.executable?.uri?.fsPath;
      if (executable) {
        return [executable];
      }
    }
    const command = api?.settings?.getExecutionDetails?.(resource)?.execCommand;
    return command && command.length > 0 ? command : undefined;
  } catch {
    return undefined;
  }
}

/** The part of the Python extension's exported API used here (ms-python.python). */
interface PythonExtensionApi {
  environments?: {
    getActiveEnvironmentPath(resource?: vscode.Uri): unknown;
    resolveEnvironment(path: unknown): Promise<{ executable?: { uri?: vscode.Uri } } | undefined>;
  };
  settings?: { getExecutionDetails?(resource?: vscode.Uri): { execCommand?: string[] } | undefined };
}
