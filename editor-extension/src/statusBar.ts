/** The status bar item: shows renderStatus() of the last `cube/status`, and opens the attestation page. */
import * as vscode from "vscode";
import { ClientState, StatusPayload, renderStatus } from "./status";

/** Holds the last status and redraws the item when anything changes. */
export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem("cube.status", vscode.StatusBarAlignment.Right, 100);
  private status: StatusPayload | undefined;
  private receivedAt: string | undefined;
  private client: ClientState = { running: false, signedIn: false };
  private readonly updated = new vscode.EventEmitter<void>();
  /** Fires after every redraw (the attestation page follows it). */
  readonly onDidUpdate = this.updated.event;

  constructor() {
    this.item.name = "Cube attestation";
    this.item.command = "cube.showAttestation";
    this.draw();
    this.item.show();
  }

  /** The last `cube/status` and when it arrived. */
  get last(): { status: StatusPayload | undefined; receivedAt: string | undefined } {
    return { status: this.status, receivedAt: this.receivedAt };
  }

  /** The text currently shown (for tests and the e2e session). */
  get text(): string {
    return this.item.text;
  }

  /** A new `cube/status` from the server. */
  update(status: StatusPayload): void {
    this.status = status;
    this.receivedAt = new Date().toISOString();
    this.draw();
  }

  /** The client's own state changed (started, stopped, signed in or out). */
  setClient(state: Partial<ClientState>): void {
    this.client = { ...this.client, ...state };
    if (!this.client.running) {
      this.status = undefined;
    }
    this.draw();
  }

  dispose(): void {
    this.updated.dispose();
    this.item.dispose();
  }

  private draw(): void {
    const view = renderStatus(this.status, this.client);
    this.item.text = view.text;
    this.item.tooltip = new vscode.MarkdownString(view.tooltip.replace(/\n/g, "  \n"));
    this.item.backgroundColor =
      view.colour === "error"
        ? new vscode.ThemeColor("statusBarItem.errorBackground")
        : view.colour === "warning"
          ? new vscode.ThemeColor("statusBarItem.warningBackground")
          : undefined;
    this.updated.fire();
  }
}
