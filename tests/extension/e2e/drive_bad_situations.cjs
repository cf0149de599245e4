/**
 * Bad situations in a real VS Code (code-server in headless Chromium, playwright-core), for
 * tests/extension/test_vscode_bad_situations.py:
 *
 * 1. `cube.server.command` names a file that does not exist: exactly one error notification with a
 *    "How to install" action, however much one types; the editor keeps working. The test then puts
 *    a cube-lsp that exits at once at that path (`install-crashing`): after "Cube: Restart Server",
 *    one notification again. Then it installs the real one there (`install-working`): "Cube: Restart
 *    Server" starts it, and with "Cube: Use Local Stack" ghost text appears and the status bar says
 *    SIMULATED, on the first keystroke (nothing else restarts the server).
 * 2. The test writes `cube.completion.debounceMs: "fast"` (`bad-setting`): one message naming the
 *    field, and completions keep working on the default.
 *
 * Events and waits as in vscode_page.cjs: no sleeps.
 */
"use strict";
const path = require("node:path");
const { cfg, T, emit, ask, waitGhost, runCommand, statusItem, toasts, notificationTexts, editorText, openWorkbench, openFile, toEnd, drive } = require("./vscode_page.cjs");

/** The texts of the toasts that include `text`. */
async function toastTexts(page, text) {
  return (await toasts(page, text).allInnerTexts()).map((t) => t.replace(/\s+/g, " ").trim());
}

/** Wait until the extension host has handled everything sent before: a round trip through a command. */
async function extensionHostCaughtUp(page) {
  await runCommand(page, "Cube: Show Log");
  await page.locator(".panel .monaco-editor, .part.panel .output").first().waitFor({ state: "visible", timeout: T });
  await page.keyboard.press("Control+J"); // hide the panel again
}

/** Wait for ghost text (any), Escape it first so a new completion is asked for. */
async function newGhostText(page) {
  await page.keyboard.press("Escape");
  await waitGhost(page, "empty");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => window.__cubeGhost().trim() !== "", null, { timeout: T, polling: "raf" });
  return page.evaluate(() => window.__cubeGhost());
}

drive(async (page) => {
  await openWorkbench(page);

  // 1. Missing at start: one error notification with "How to install".
  const missing = toasts(page, "How to install");
  await missing.first().waitFor({ timeout: T });
  const editor = await openFile(page, cfg.file);
  await toEnd(page, editor);
  const typed = "\nvalue = 1 + 2  # typed while cube-lsp is missing";
  await page.keyboard.type(typed, { delay: 10 });
  await page.waitForFunction(
    (want) => document.querySelector(".monaco-editor .view-lines").innerText.replace(/\u00a0/g, " ").includes(want),
    typed.trim(),
    { timeout: T },
  );
  await extensionHostCaughtUp(page);
  const missingTexts = await toastTexts(page, "How to install");
  const buttons = await missing.first().locator(".notification-list-item-buttons-container .monaco-button").allInnerTexts();
  const missingStatus = await statusItem(page).innerText();
  await page.screenshot({ path: path.join(cfg.artifacts, "bad-missing-server.png") });
  emit("missing", { toasts: missingTexts, buttons, status: missingStatus, editor: await editorText(page) });

  // "How to install" opens the README's install section in a preview.
  await missing.first().locator(".monaco-button", { hasText: "How to install" }).click();
  const preview = page.locator(".tabs-container .tab", { hasText: /Preview/ }).first();
  await preview.waitFor({ timeout: T });
  emit("how-to-install", { tab: (await preview.innerText()).trim() });
  await page.locator(".tabs-container .tab", { hasText: cfg.file }).first().click();
  await editor.waitFor({ state: "visible", timeout: T });

  // Crashing at start: the test puts a cube-lsp there that exits at once; Cube: Restart Server.
  await ask("install-crashing");
  await runCommand(page, "Cube: Restart Server");
  const crashed = toasts(page, "How to install");
  await crashed.first().waitFor({ timeout: T });
  const moreTyping = "\nvalue = 3  # typed while cube-lsp crashes at start";
  await toEnd(page, editor);
  await page.keyboard.type(moreTyping, { delay: 10 });
  await extensionHostCaughtUp(page);
  emit("crashed", { toasts: await toastTexts(page, "How to install"), status: await statusItem(page).innerText(), editor: await editorText(page) });
  await crashed.first().locator(".codicon-notifications-clear, .codicon-close").first().click();

  // Fixed: the test installs the real cube-lsp at that path; Cube: Restart Server is the only restart.
  await ask("install-working");
  await runCommand(page, "Cube: Restart Server");
  await runCommand(page, "Cube: Use Local Stack");
  await toasts(page, "using the local cube-stack").first().waitFor({ timeout: T });
  await statusItem(page).filter({ hasText: "not attested yet" }).waitFor({ timeout: T });
  await toEnd(page, editor);
  await page.keyboard.press("Enter");
  await waitGhost(page, "has", cfg.firstAnswer);
  await statusItem(page).filter({ hasText: "SIMULATED" }).waitFor({ timeout: T });
  emit("fixed", { status: await statusItem(page).innerText(), ghost: await page.evaluate(() => window.__cubeGhost()) });
  await page.keyboard.press("Tab");
  await waitGhost(page, "empty");

  // 2. A setting of the wrong type: one message naming the field; completions go on.
  await ask("bad-setting");
  const invalid = toasts(page, "completion.debounceMs");
  await invalid.first().waitFor({ timeout: T });
  const ghosts = [];
  for (let i = 0; i < 3; i++) ghosts.push(await newGhostText(page));
  await extensionHostCaughtUp(page);
  await page.screenshot({ path: path.join(cfg.artifacts, "bad-setting-type.png") });
  emit("bad-setting-shown", { toasts: await notificationTexts(page, "completion.debounceMs"), ghosts, status: await statusItem(page).innerText() });
});
