/**
 * Sign-in in a real VS Code (code-server in headless Chromium, playwright-core) against the real auth
 * service of an embedded cube-stack, for tests/extension/test_vscode_sign_in.py:
 *
 * 1. `cube.authUrl` points at a port nothing listens on: "Cube: Sign In" says the auth service did not
 *    answer, and nothing is signed in.
 * 2. The test points `cube.authUrl` at the stack's auth service (`auth-up`); a wrong password is
 *    refused with one clear message.
 * 3. The right password signs in; a keystroke gets ghost text through the proxy with that session
 *    (`signed-in`: the test checks no token reached settings.json).
 * 4. The test revokes the session's refresh tokens at the auth service (`revoke`), as "sign out
 *    everywhere" would: the extension's next refresh is refused and it asks to sign in again.
 *
 * Events and waits as in vscode_page.cjs: no sleeps.
 */
"use strict";
const path = require("node:path");
const { cfg, T, emit, ask, waitGhost, runCommand, pick, answerInput, statusItem, toasts, openWorkbench, openFile, toEnd, drive } = require("./vscode_page.cjs");

/** The texts of the toasts that include `text`. */
async function toastTexts(page, text) {
  return (await toasts(page, text).allInnerTexts()).map((t) => t.replace(/\s+/g, " ").trim());
}

/** Run Cube: Sign In with a password; return the text of the toast that answers it. */
async function signIn(page, username, password, answer) {
  await runCommand(page, "Cube: Sign In", { opensInput: true });
  await pick(page, "Email or username and password");
  await answerInput(page, "Cube: email or username", username);
  await answerInput(page, "Cube: password", password);
  const toast = toasts(page, answer).last();
  await toast.waitFor({ timeout: T });
  const text = (await toast.innerText()).replace(/\s+/g, " ").trim();
  // A toast shows its close button only under the pointer; it may also have hidden itself already, so
  // closing it is best-effort and bounded (an unbounded click waited out playwright's 30 s default).
  await toast.hover({ timeout: 2000 }).catch(() => undefined);
  await toast.locator(".codicon-notifications-clear, .codicon-close").first().click({ timeout: 2000 }).catch(() => undefined);
  return text;
}

drive(async (page) => {
  await openWorkbench(page);
  const editor = await openFile(page, cfg.file);

  // 1. The auth service is down.
  const down = await signIn(page, cfg.username, cfg.password, "did not answer");
  emit("auth-down", { toast: down, status: await statusItem(page).innerText() });

  // 2. A wrong password, once the auth URL is right.
  await ask("auth-up");
  const refused = await signIn(page, cfg.username, `${cfg.password}-wrong`, "Sign-in refused");
  emit("wrong-password", { toast: refused });

  // 3. The right password: ghost text through the proxy with this session.
  const welcome = await signIn(page, cfg.username, cfg.password, "signed in");
  emit("signed-in-toast", { toast: welcome });
  await ask("signed-in");
  await toEnd(page, editor);
  await page.keyboard.press("Enter");
  await waitGhost(page, "has", cfg.firstAnswer);
  await statusItem(page).filter({ hasText: "SIMULATED" }).waitFor({ timeout: T });
  emit("completed", { status: await statusItem(page).innerText(), ghost: await page.evaluate(() => window.__cubeGhost()) });
  await page.keyboard.press("Escape");

  // 4. The session is revoked at the auth service: the next refresh asks to sign in again.
  await ask("revoke");
  const expired = toasts(page, "sign in again");
  await expired.first().waitFor({ timeout: T });
  const buttons = await expired.first().locator(".notification-list-item-buttons-container .monaco-button").allInnerTexts();
  await page.screenshot({ path: path.join(cfg.artifacts, "sign-in-expired.png") });
  // Signed out now: the next completion is refused by the proxy and the status bar says to sign in.
  await page.keyboard.press("Enter");
  await statusItem(page).filter({ hasText: "sign in" }).waitFor({ timeout: T });
  emit("expired", { toasts: await toastTexts(page, "sign in again"), buttons, status: await statusItem(page).innerText() });
});
