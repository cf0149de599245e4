/**
 * Drives code-server (a real VS Code in the browser) through headless Chromium with playwright-core,
 * for tests/extension/test_vscode_e2e.py: opens a Python file, runs "Cube: Use Local Stack", checks
 * ghost text, Tab, the status bar, "Cube: Show Attestation", and measures keystroke-to-ghost-text.
 *
 * Input: the JSON in $CUBE_E2E (see the test). Output: one `@@ {json}` line per event on stdout; the
 * test answers the `stop-stack` event with one line on stdin once the stack is down. Every wait is a
 * playwright locator or waitForFunction with a timeout: no sleeps.
 */
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const readline = require("node:readline");

const cfg = JSON.parse(process.env.CUBE_E2E);
const { chromium } = require(cfg.playwrightCore);
const T = cfg.timeoutMs ?? 30000;

// Monaco renders ghost text as token spans whose class names contain "ghost-text" (inline
// `ghost-text-decoration`, and `ghost-text` view zones for further lines).
function ghostTextInPage() {
  const all = [...document.querySelectorAll('.monaco-editor [class*="ghost-text"]')];
  return all
    .filter((el) => !all.some((other) => other !== el && other.contains(el)))
    .map((el) => el.textContent)
    .join("")
    .replace(/\u00a0/g, " ");
}

async function waitGhost(page, predicate, want) {
  await page.waitForFunction(
    ([pred, w]) => {
      const text = window.__cubeGhost();
      return pred === "has" ? text.includes(w) : text === "";
    },
    [predicate, want ?? ""],
    { timeout: T, polling: "raf" },
  );
}
const stdin = readline.createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();

function emit(event, data = {}) {
  process.stdout.write(`@@ ${JSON.stringify({ event, ...data })}\n`);
}

/** Run a command from the command palette by its title. */
async function runCommand(page, title) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: T });
  await input.fill(`>${title}`);
  const row = page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first();
  await row.waitFor({ state: "visible", timeout: T });
  await page.keyboard.press("Enter");
  await page.locator(".quick-input-widget").waitFor({ state: "hidden", timeout: T });
}

function statusItem(page) {
  return page.locator(".statusbar-item", { hasText: "Cube" }).first();
}

/** The editor's visible text, with Monaco's non-breaking spaces made plain. */
async function editorText(page) {
  const text = await page.locator(".monaco-editor .view-lines").first().innerText();
  return text.replace(/\u00a0/g, " ");
}

let current;

async function main() {
  const browser = await chromium.launch({
    executablePath: cfg.chromium,
    headless: true,
    // From ../shared/tools/setup-code-server.sh: this machine has no internet and no GPU.
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
    current = page;
    page.on("pageerror", (error) => emit("pageerror", { message: String(error).slice(0, 300) }));
    const t0 = Date.now();
    await page.goto(cfg.url, { timeout: T });
    await page.locator(".monaco-workbench").waitFor({ state: "visible", timeout: T });
    await statusItem(page).waitFor({ state: "visible", timeout: T });
    emit("workbench", { ms: Date.now() - t0 });
    await page.evaluate(`window.__cubeGhost = ${ghostTextInPage.toString()}`);

    // Open the file with Quick Open.
    await page.keyboard.press("Control+P");
    const input = page.locator(".quick-input-widget input");
    await input.waitFor({ state: "visible", timeout: T });
    await input.fill(cfg.file);
    await page.locator(".quick-input-list .monaco-list-row", { hasText: cfg.file }).first().waitFor({ timeout: T });
    await page.keyboard.press("Enter");
    const editor = page.locator(`.monaco-editor[data-uri$="${cfg.file}"]`);
    await editor.waitFor({ state: "visible", timeout: T });

    await runCommand(page, "Cube: Use Local Stack");
    await page.locator(".notifications-toasts", { hasText: "using the local cube-stack" }).waitFor({ timeout: T });
    emit("local-stack");

    // Type: a new line in the function body asks for a completion.
    await editor.locator(".view-lines").click();
    await page.keyboard.press("Control+End");
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

    // Stop the stack (the test does it), then type again: the status bar must turn to an error.
    emit("stop-stack");
    const answer = await lines.next();
    if (answer.done) throw new Error("the test closed stdin before stopping the stack");
    await editor.locator(".view-lines").click();
    await page.keyboard.press("Control+End");
    await page.keyboard.type("x = ");
    const failed = statusItem(page).filter({ has: page.locator(".codicon-error") });
    await failed.waitFor({ timeout: T });
    const errorText = await statusItem(page).innerText();
    const hover = (await statusItem(page).getAttribute("aria-label")) ?? "";
    await page.screenshot({ path: path.join(cfg.artifacts, "stack-stopped.png") });
    emit("stopped", { status: errorText, ariaLabel: hover });
  } catch (error) {
    if (current) await current.screenshot({ path: path.join(cfg.artifacts, "failure.png") }).catch(() => undefined);
    throw error;
  } finally {
    await browser.close();
  }
}

main().then(
  () => { emit("done"); process.exit(0); },
  (error) => { emit("error", { message: String(error && error.stack || error).slice(0, 2000) }); process.exit(1); },
);
