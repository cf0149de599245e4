/**
 * Drives code-server (a real VS Code in the browser) through headless Chromium with playwright-core,
 * for tests/extension/test_vscode_e2e.py: opens a Python file, runs "Cube: Use Local Stack", checks
 * ghost text, Tab, the status bar, "Cube: Show Attestation", "Cube: Search Workspace" (type a query,
 * open the result), and measures keystroke-to-ghost-text.
 *
 * Input: the JSON in $CUBE_E2E (see the test). Output: one `@@ {json}` line per event on stdout; the
 * test answers the `stop-stack` event with one line on stdin once the stack is down (vscode_page.cjs).
 * Every wait is a playwright locator or waitForFunction with a timeout: no sleeps.
 */
"use strict";
const path = require("node:path");
const { cfg, T, emit, ask, waitGhost, runCommand, answerInput, statusItem, toasts, editorText, openWorkbench, openFile, toEnd, drive } = require("./vscode_page.cjs");

drive(async (page) => {
  await openWorkbench(page);
  const editor = await openFile(page, cfg.file);

  await runCommand(page, "Cube: Use Local Stack");
  await toasts(page, "using the local cube-stack").first().waitFor({ timeout: T });
  emit("local-stack");

  // Type: a new line in the function body asks for a completion.
  await toEnd(page, editor);
  await page.keyboard.press("Enter");
  await waitGhost(page, "has", cfg.firstAnswer);
  await statusItem(page).filter({ hasText: "SIMULATED" }).waitFor({ timeout: T });
  const statusText = await statusItem(page).innerText();
  await page.screenshot({ path: path.join(cfg.artifacts, "ghost-text.png") });
  emit("ghost-text", { status: statusText });

  await page.keyboard.press("Tab");
  await waitGhost(page, "empty");
  await page.waitForFunction(
    (want) => document.querySelector(".monaco-editor .view-lines").innerText.replace(/\u00a0/g, " ").includes(want),
    cfg.firstAnswer,
    { timeout: T },
  );
  emit("accepted", { text: await editorText(page) });

  // Keystroke -> ghost text on screen, measured in the page: keydown's timestamp to the first
  // animation frame after a ghost-text element is in the DOM.
  await page.evaluate(() => {
    const ghostText = window.__cubeGhost;
    const probe = { start: 0, end: 0 };
    window.__cubeProbe = probe;
    window.addEventListener("keydown", (e) => { if (e.key === "Enter") { probe.start = performance.now(); probe.end = 0; } }, true);
    new MutationObserver(() => {
      if (probe.start && !probe.end && ghostText() !== "") {
        probe.end = -1;
        requestAnimationFrame(() => { probe.end = performance.now(); });
      }
    }).observe(document.body, { childList: true, subtree: true, characterData: true });
  });
  const samples = [];
  for (let i = 0; i < cfg.keystrokes; i++) {
    await page.keyboard.press("Escape");
    await waitGhost(page, "empty");
    await page.evaluate(() => { window.__cubeProbe.start = 0; window.__cubeProbe.end = 0; });
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => window.__cubeProbe.end > 0, null, { timeout: T, polling: "raf" });
    samples.push(await page.evaluate(() => window.__cubeProbe.end - window.__cubeProbe.start));
  }
  emit("latency", { samples });
  await page.keyboard.press("Escape");

  await runCommand(page, "Cube: Show Attestation");
  const webview = page.frameLocator("iframe.webview.ready").frameLocator("iframe#active-frame");
  const measurementRow = webview.locator('tr:has(th:text-is("Measurement")) td');
  await measurementRow.waitFor({ timeout: T });
  const measurement = (await measurementRow.innerText()).trim();
  const simulatedRow = (await webview.locator('tr:has(th:text-is("Simulated")) td').innerText()).trim();
  await page.screenshot({ path: path.join(cfg.artifacts, "attestation.png") });
  emit("attestation", { measurement, simulated: simulatedRow });

  // Search: a QuickPick fed by cube/search as one types; Enter opens the location. First the index
  // must be done (the status bar item spins while the workspace is indexed and embedded).
  await statusItem(page).locator(".codicon-sync").waitFor({ state: "detached", timeout: T });
  await runCommand(page, "Cube: Search Workspace", { opensInput: true });
  const searchBox = page.locator(".quick-input-widget", { hasText: "Cube: Search Workspace" });
  await searchBox.waitFor({ state: "visible", timeout: T });
  await searchBox.locator("input").first().pressSequentially(cfg.searchQuery, { delay: 15 });
  const row = searchBox.locator(".quick-input-list .monaco-list-row", { hasText: cfg.searchSymbol }).first();
  await row.waitFor({ state: "visible", timeout: T });
  const rows = (await searchBox.locator(".quick-input-list .monaco-list-row").allInnerTexts()).map((t) => t.replace(/\s+/g, " ").trim());
  await page.screenshot({ path: path.join(cfg.artifacts, "search.png") });
  await row.click();
  const opened = page.locator(`.monaco-editor[data-uri$="${cfg.searchFile}"]`);
  await opened.waitFor({ state: "visible", timeout: T });
  const cursor = page.locator(".statusbar-item", { hasText: /Ln \d+, Col \d+/ }).first();
  await cursor.waitFor({ timeout: T });
  const tab = page.locator(`.tabs-container .tab.active[data-resource-name="${cfg.searchFile}"]`).first();
  await tab.waitFor({ timeout: T });
  emit("search", { rows, tab: (await tab.innerText()).trim(), cursor: (await cursor.innerText()).trim() });
  await page.locator(".tabs-container .tab", { hasText: cfg.file }).first().click();
  await editor.waitFor({ state: "visible", timeout: T });

  // Stop the stack (the test does it), then type again: the status bar must turn to an error.
  await ask("stop-stack");
  await toEnd(page, editor);
  await page.keyboard.type("x = ");
  const failed = statusItem(page).filter({ has: page.locator(".codicon-error") });
  await failed.waitFor({ timeout: T });
  const errorText = await statusItem(page).innerText();
  const hover = (await statusItem(page).getAttribute("aria-label")) ?? "";
  await page.screenshot({ path: path.join(cfg.artifacts, "stack-stopped.png") });
  emit("stopped", { status: errorText, ariaLabel: hover });
});
