import * as assert from "node:assert/strict";
import {
  AuthError,
  Fetch,
  REFRESH_MARGIN_MS,
  SESSION_KEY,
  SecretStore,
  clearSession,
  loadSession,
  refreshDelayMs,
  refreshExpired,
  refreshSession,
  saveSession,
  signInWithPassword,
  tokenExpiry,
} from "../src/auth";

function jwt(claims: Record<string, unknown>): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${part({ alg: "EdDSA" })}.${part(claims)}.sig`;
}

function reply(status: number, body: unknown): ReturnType<Fetch> {
  return Promise.resolve({ status, json: () => Promise.resolve(body) });
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof AuthError);
    return error.code;
  }
  assert.fail("expected an AuthError");
}

class MemorySecrets implements SecretStore {
  readonly data = new Map<string, string>();
  async get(key: string) {
    return this.data.get(key);
  }
  async store(key: string, value: string) {
    this.data.set(key, value);
  }
  async delete(key: string) {
    this.data.delete(key);
  }
}

describe("token refresh timing", () => {
  const now = 1_800_000_000_000;
  const access = jwt({ exp: now / 1000 + 3600, type: 0 });

  it("reads exp from a JWT and nothing from an opaque token", () => {
    assert.equal(tokenExpiry(access), now + 3_600_000);
    assert.equal(tokenExpiry("pat_abc"), undefined);
    assert.equal(tokenExpiry("a.b.c"), undefined);
  });

  it("refreshes a margin before expiry", () => {
    assert.equal(refreshDelayMs({ kind: "password", accessToken: access, refreshToken: "r" }, now), 3_600_000 - REFRESH_MARGIN_MS);
  });

  it("refreshes at once when the access token has expired or is about to", () => {
    assert.equal(refreshDelayMs({ kind: "password", accessToken: access, refreshToken: "r" }, now + 3_600_000 - 1000), 0);
    assert.equal(refreshDelayMs({ kind: "password", accessToken: access, refreshToken: "r" }, now + 9_999_999), 0);
  });

  it("refreshes a token shorter-lived than the margin at half-life, not in a loop", () => {
    const short = jwt({ iat: now / 1000, exp: now / 1000 + 4 });
    assert.equal(refreshDelayMs({ kind: "password", accessToken: short, refreshToken: "r" }, now), 2000);
    const long = jwt({ iat: now / 1000, exp: now / 1000 + 3600 });
    assert.equal(refreshDelayMs({ kind: "password", accessToken: long, refreshToken: "r" }, now), 3_600_000 - REFRESH_MARGIN_MS);
  });

  it("never refreshes a token without a refresh token or expiry (PAT, local stack)", () => {
    assert.equal(refreshDelayMs({ kind: "token", accessToken: access }, now), undefined);
    assert.equal(refreshDelayMs({ kind: "password", accessToken: "pat_x", refreshToken: "r" }, now), undefined);
  });

  it("knows when the refresh token itself has expired", () => {
    const refresh = jwt({ exp: now / 1000 + 10 });
    assert.equal(refreshExpired({ kind: "password", accessToken: access, refreshToken: refresh }, now), false);
    assert.equal(refreshExpired({ kind: "password", accessToken: access, refreshToken: refresh }, now + 10_000), true);
  });
});

describe("sign-in and refresh against the SuperMQ contract", () => {
  it("posts username and password to /users/tokens/issue", async () => {
    const calls: [string, Parameters<Fetch>[1]][] = [];
    const fetch: Fetch = (url, init) => {
      calls.push([url, init]);
      return reply(201, { access_token: "A", refresh_token: "R", access_type: "access" });
    };
    const session = await signInWithPassword(fetch, "http://auth:9002/", "ann@example.com", "secret123");
    assert.deepEqual(session, { kind: "password", accessToken: "A", refreshToken: "R" });
    assert.equal(calls[0][0], "http://auth:9002/users/tokens/issue");
    assert.equal(calls[0][1].method, "POST");
    assert.deepEqual(JSON.parse(calls[0][1].body ?? ""), { username: "ann@example.com", password: "secret123" });
  });

  it("says wrong credentials on 401", async () => {
    assert.equal(await codeOf(signInWithPassword(() => reply(401, { error: "x" }), "http://a", "u", "p")), "auth.bad_credentials");
  });

  it("says the auth service is down when it does not answer", async () => {
    assert.equal(await codeOf(signInWithPassword(() => Promise.reject(new TypeError("fetch failed")), "http://a", "u", "p")), "auth.unreachable");
  });

  it("needs an auth URL", async () => {
    assert.equal(await codeOf(signInWithPassword(() => reply(201, {}), undefined, "u", "p")), "auth.no_url");
  });

  it("refreshes with the refresh token as bearer and keeps it when none comes back", async () => {
    let auth = "";
    const fetch: Fetch = (url, init) => {
      assert.ok(url.endsWith("/users/tokens/refresh"));
      assert.equal(init.headers["Content-Type"], "application/json");
      auth = init.headers.Authorization;
      return reply(201, { access_token: "A2" });
    };
    const next = await refreshSession(fetch, "http://a", { kind: "password", accessToken: "A", refreshToken: "R" });
    assert.equal(auth, "Bearer R");
    assert.deepEqual(next, { kind: "password", accessToken: "A2", refreshToken: "R" });
  });

  it("asks to sign in again when the refresh is refused", async () => {
    const session = { kind: "password" as const, accessToken: "A", refreshToken: "R" };
    assert.equal(await codeOf(refreshSession(() => reply(401, {}), "http://a", session)), "auth.session_expired");
    assert.equal(await codeOf(refreshSession(() => reply(201, {}), "http://a", { kind: "token", accessToken: "A" })), "auth.session_expired");
  });

  it("rejects an answer without an access token", async () => {
    assert.equal(await codeOf(signInWithPassword(() => reply(201, { nope: 1 }), "http://a", "u", "p")), "auth.bad_response");
    assert.equal(await codeOf(signInWithPassword(() => reply(500, {}), "http://a", "u", "p")), "auth.bad_response");
  });
});

describe("session storage", () => {
  it("round-trips through the secret store and treats junk as signed out", async () => {
    const secrets = new MemorySecrets();
    assert.equal(await loadSession(secrets), undefined);
    await saveSession(secrets, { kind: "password", accessToken: "A", refreshToken: "R" });
    assert.deepEqual(await loadSession(secrets), { kind: "password", accessToken: "A", refreshToken: "R" });
    secrets.data.set(SESSION_KEY, "{not json");
    assert.equal(await loadSession(secrets), undefined);
    await clearSession(secrets);
    assert.equal(secrets.data.size, 0);
  });
});
