/**
 * Sign-in against the auth service (SuperMQ's `POST /users/tokens/issue` and `/users/tokens/refresh`),
 * the session kept in VS Code's SecretStorage, and when to refresh it.
 *
 * Pure: the HTTP client (`fetch`), the secret store and the clock are parameters, so the timing and
 * the failure cases are unit-tested in plain node.
 */

/** Where the tokens live: VS Code's SecretStorage satisfies this (never settings.json). */
export interface SecretStore {
  get(key: string): PromiseLike<string | undefined>;
  store(key: string, value: string): PromiseLike<void>;
  delete(key: string): PromiseLike<void>;
}

/** The subset of the global `fetch` the auth client uses. */
export type Fetch = (
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string; signal?: AbortSignal },
) => Promise<{ status: number; json(): Promise<unknown> }>;

/** How the session was obtained: a password sign-in can refresh, a pasted or local token cannot. */
export type SessionKind = "password" | "token" | "localStack";

/** The signed-in state. */
export interface Session {
  kind: SessionKind;
  accessToken: string;
  refreshToken?: string;
}

/** Why an auth call failed; `code` is stable, `message` is for the user. */
export class AuthError extends Error {
  constructor(
    readonly code: "auth.bad_credentials" | "auth.session_expired" | "auth.unreachable" | "auth.bad_response" | "auth.no_url",
    message: string,
  ) {
    super(message);
    this.name = "AuthError";
  }
}

export const SESSION_KEY = "cube.session";
/** Refresh this long before the access token expires. */
export const REFRESH_MARGIN_MS = 60_000;
/** Retry a refresh that failed for a network reason after this long. */
export const RETRY_MS = 30_000;
const TIMEOUT_MS = 15_000;

/** Read the stored session; a malformed entry counts as signed out. */
export async function loadSession(secrets: SecretStore): Promise<Session | undefined> {
  const raw = await secrets.get(SESSION_KEY);
  if (!raw) {
    return undefined;
  }
  try {
    const parsed = JSON.parse(raw) as Partial<Session>;
    if (typeof parsed.accessToken === "string" && parsed.accessToken && typeof parsed.kind === "string") {
      return parsed as Session;
    }
  } catch {
    // fall through: treat as signed out
  }
  return undefined;
}

/** Keep the session in the secret store. */
export async function saveSession(secrets: SecretStore, session: Session): Promise<void> {
  await secrets.store(SESSION_KEY, JSON.stringify(session));
}

/** Forget the session. */
export async function clearSession(secrets: SecretStore): Promise<void> {
  await secrets.delete(SESSION_KEY);
}

/** The claims of a JWT (unverified: only for timing), or undefined for an opaque token (a PAT). */
function tokenClaims(token: string): { exp?: unknown; iat?: unknown } | undefined {
  const parts = token.split(".");
  if (parts.length !== 3) {
    return undefined;
  }
  try {
    const claims: unknown = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8"));
    return claims !== null && typeof claims === "object" ? (claims as { exp?: unknown; iat?: unknown }) : undefined;
  } catch {
    return undefined;
  }
}

/** The `exp` claim of a JWT in epoch milliseconds; undefined for an opaque token (a PAT). */
export function tokenExpiry(token: string): number | undefined {
  const exp = tokenClaims(token)?.exp;
  return typeof exp === "number" ? exp * 1000 : undefined;
}

/** How long the token was issued for (exp - iat) in milliseconds, when it says. */
function tokenLifetime(token: string): number | undefined {
  const claims = tokenClaims(token);
  return typeof claims?.exp === "number" && typeof claims.iat === "number" ? (claims.exp - claims.iat) * 1000 : undefined;
}

/**
 * How long to wait before refreshing `session` at time `now` (ms): undefined when it cannot or need
 * not be refreshed (no refresh token, or an access token without an expiry), 0 when it is due.
 * The margin is at most half the token's lifetime, so a deployment with tokens shorter than the
 * margin gets a refresh at half-life, not one refresh after another.
 */
export function refreshDelayMs(session: Session, now: number, margin = REFRESH_MARGIN_MS): number | undefined {
  if (!session.refreshToken) {
    return undefined;
  }
  const expiry = tokenExpiry(session.accessToken);
  if (expiry === undefined) {
    return undefined;
  }
  const lifetime = tokenLifetime(session.accessToken);
  const lead = lifetime !== undefined ? Math.min(margin, lifetime / 2) : margin;
  return Math.max(0, expiry - lead - now);
}

/** Whether the refresh token itself has expired at `now` (then only a new sign-in helps). */
export function refreshExpired(session: Session, now: number): boolean {
  const expiry = session.refreshToken ? tokenExpiry(session.refreshToken) : undefined;
  return expiry !== undefined && expiry <= now;
}

/** `POST {authUrl}/users/tokens/issue` with a username or email and a password. */
export async function signInWithPassword(
  fetch: Fetch,
  authUrl: string | null | undefined,
  username: string,
  password: string,
): Promise<Session> {
  const body = JSON.stringify({ username, password });
  const reply = await call(fetch, authUrl, "/users/tokens/issue", { "Content-Type": "application/json" }, body);
  if (reply.status === 400 || reply.status === 401 || reply.status === 403 || reply.status === 404) {
    throw new AuthError("auth.bad_credentials", "Sign-in refused: wrong username, email or password.");
  }
  return sessionFrom(reply, "password");
}

/** `POST {authUrl}/users/tokens/refresh` with the refresh token as the bearer. */
export async function refreshSession(fetch: Fetch, authUrl: string | null | undefined, session: Session): Promise<Session> {
  if (!session.refreshToken) {
    throw new AuthError("auth.session_expired", "This session cannot be refreshed: sign in again.");
  }
  // SuperMQ (and cube-stack's auth) answer 415 to a refresh without a JSON content type.
  const headers = { Authorization: `Bearer ${session.refreshToken}`, "Content-Type": "application/json" };
  const reply = await call(fetch, authUrl, "/users/tokens/refresh", headers, "{}");
  if (reply.status === 400 || reply.status === 401 || reply.status === 403) {
    throw new AuthError("auth.session_expired", "Your Cube session has expired: sign in again.");
  }
  const next = await sessionFrom(reply, "password");
  // SuperMQ may answer a refresh without a new refresh token; keep the old one then.
  return { ...next, refreshToken: next.refreshToken ?? session.refreshToken };
}

/** A session from a pasted personal access token (or a JWT): no refresh. */
export function sessionFromToken(token: string, kind: SessionKind = "token"): Session {
  return { kind, accessToken: token.trim() };
}

async function call(
  fetch: Fetch,
  authUrl: string | null | undefined,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; json(): Promise<unknown> }> {
  if (!authUrl) {
    throw new AuthError("auth.no_url", "Set `cube.authUrl` to the auth service's URL to sign in with a password.");
  }
  const url = authUrl.replace(/\/+$/, "") + path;
  try {
    const init: Parameters<Fetch>[1] = { method: "POST", headers, signal: AbortSignal.timeout(TIMEOUT_MS) };
    if (body !== undefined) {
      init.body = body;
    }
    return await fetch(url, init);
  } catch {
    // The error text of fetch can carry the URL only; say what the user can act on.
    throw new AuthError("auth.unreachable", `The auth service at ${authUrl} did not answer; is it running?`);
  }
}

async function sessionFrom(reply: { status: number; json(): Promise<unknown> }, kind: SessionKind): Promise<Session> {
  if (reply.status < 200 || reply.status >= 300) {
    throw new AuthError("auth.bad_response", `The auth service answered HTTP ${reply.status}; try again later.`);
  }
  let data: unknown;
  try {
    data = await reply.json();
  } catch {
    data = undefined;
  }
  const fields = (data ?? {}) as { access_token?: unknown; refresh_token?: unknown };
  if (typeof fields.access_token !== "string" || !fields.access_token) {
    throw new AuthError("auth.bad_response", "The auth service's answer held no access token.");
  }
  const session: Session = { kind, accessToken: fields.access_token };
  if (typeof fields.refresh_token === "string" && fields.refresh_token) {
    session.refreshToken = fields.refresh_token;
  }
  return session;
}
