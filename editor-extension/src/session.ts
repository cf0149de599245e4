/**
 * The signed-in session in VS Code: kept in SecretStorage, refreshed before its access token expires,
 * and announced to the client so the token reaches cube-lsp (never written to disk by us).
 */
import * as vscode from "vscode";
import {
  AuthError,
  RETRY_MS,
  Session,
  clearSession,
  loadSession,
  refreshDelayMs,
  refreshExpired,
  refreshSession,
  saveSession,
} from "./auth";

/** Owns the session and its refresh timer. */
export class SessionManager implements vscode.Disposable {
  private session: Session | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly changed = new vscode.EventEmitter<void>();
  /** Fires when the token changes (sign-in, refresh, sign-out). */
  readonly onDidChange = this.changed.event;

  constructor(
    private readonly secrets: vscode.SecretStorage,
    private readonly authUrl: () => string | null | undefined,
    private readonly output: vscode.LogOutputChannel,
  ) {}

  /** Load the stored session and refresh it now if it is due. */
  async load(): Promise<void> {
    this.session = await loadSession(this.secrets);
    this.schedule();
  }

  /** The access token for cube-lsp, or null when signed out. */
  get accessToken(): string | null {
    return this.session?.accessToken ?? null;
  }

  /** Whether a session is held. */
  get signedIn(): boolean {
    return this.session !== undefined;
  }

  /** Keep a new session (from a sign-in or the local stack). */
  async set(session: Session): Promise<void> {
    this.session = session;
    await saveSession(this.secrets, session);
    this.schedule();
    this.changed.fire();
  }

  /** Forget the session. */
  async clear(): Promise<void> {
    this.session = undefined;
    this.cancel();
    await clearSession(this.secrets);
    this.changed.fire();
  }

  dispose(): void {
    this.cancel();
    this.changed.dispose();
  }

  private cancel(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private schedule(delay?: number): void {
    this.cancel();
    const session = this.session;
    if (!session) {
      return;
    }
    const wait = delay ?? refreshDelayMs(session, Date.now());
    if (wait === undefined) {
      return;
    }
    this.timer = setTimeout(() => void this.refresh(), wait);
  }

  private async refresh(): Promise<void> {
    const session = this.session;
    if (!session) {
      return;
    }
    try {
      if (refreshExpired(session, Date.now())) {
        throw new AuthError("auth.session_expired", "Your Cube session has expired: sign in again.");
      }
      const next = await refreshSession(fetch, this.authUrl(), session);
      this.output.info("cube: access token refreshed");
      await this.set(next);
    } catch (error) {
      const code = error instanceof AuthError ? error.code : "auth.bad_response";
      this.output.warn(`cube: token refresh failed (${code})`);
      if (code === "auth.session_expired" || code === "auth.no_url") {
        await this.clear();
        const message = error instanceof AuthError ? error.message : "Sign in to Cube again.";
        const choice = await vscode.window.showWarningMessage(`Cube: ${message}`, "Sign In");
        if (choice === "Sign In") {
          await vscode.commands.executeCommand("cube.signIn");
        }
      } else {
        // The auth service is down or answered oddly: keep the token until it expires, try again later.
        this.schedule(RETRY_MS);
      }
    }
  }
}
