/**
 * Shared by the playwright-core drivers of tests/extension (code-server, a real VS Code in headless
 * Chromium): the config, the `@@ {json}` event protocol, and the page helpers. Every wait is a
 * playwright locator or waitForFunction with a timeout: no sleeps.
 *
 * Input: the JSON in $CUBE_E2E. Output: one `@@ {json}` line per event on stdout; `ask(event)` emits
 * an event the test handles and waits for its one-line answer on stdin.
 */
"use strict";
const path = require("node:path");
const readline = require("node:readline");

const cfg = JSON.parse(process.env.CUBE_E2E);
const { chromium } = require(cfg.playwrightCore);
const T = cfg.timeoutMs ?? 30000;
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function emit(event, data = {}) {
  process.stdout.write(`@@ ${JSON.stringify({ event, ...data })}\n`);
}

/** Emit `event` and wait until the test has handled it. */
async function ask(event, data = {}) {
  emit(event, data);
  const answer = await lines.next();
  if (answer.done) throw new Error(`the test closed stdin before answering ${event}`);
}

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

/** Wait until the ghost text includes `want` ("has") or there is none ("empty"). */
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

/**
 * Run a command from the command palette by its title; with `opensInput`, the command shows a quick
 * pick or input box of its own, so the widget stays open.
 */
async function runCommand(page, title, { opensInput = false } = {}) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: T });
  await input.fill(`>${title}`);
  const row = page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first();
  await row.waitFor({ state: "visible", timeout: T });
  await page.keyboard.press("Enter");
  if (!opensInput) {
    await page.locator(".quick-input-widget").waitFor({ state: "hidden", timeout: T });
  }
}

/** Answer the open quick pick by choosing the row that includes `label`. */
async function pick(page, label) {
  const row = page.locator(".quick-input-widget .quick-input-list .monaco-list-row", { hasText: label }).first();
  await row.waitFor({ state: "visible", timeout: T });
  await row.click();
}

/** Answer the open input box whose title includes `title` with `text` and Enter. */
async function answerInput(page, title, text) {
  const widget = page.locator(".quick-input-widget", { hasText: title });
  await widget.waitFor({ state: "visible", timeout: T });
  const input = widget.locator("input").first();
  await input.fill(text);
  await page.keyboard.press("Enter");
  await widget.filter({ hasText: title }).waitFor({ state: "hidden", timeout: T });
}

/** The extension's own status bar item (id `cube.status`), not the language client's progress item. */
function statusItem(page) {
  return page.locator('.statusbar-item[id$="cube.status"]').first();
}

/** The notification toasts whose text includes `text`. */
function toasts(page, text) {
  return page.locator(".notifications-toasts .notification-toast", { hasText: text });
}

/**
 * The texts of every notification so far whose text includes `text`, read from the notification
 * centre: toasts hide themselves after a while (sooner on a slow machine), the centre keeps them all.
 */
async function notificationTexts(page, text) {
  await runCommand(page, "Notifications: Show Notifications");
  const center = page.locator(".notifications-center");
  await center.waitFor({ state: "visible", timeout: T });
  const items = center.locator(".notification-list-item", { hasText: text });
  const texts = (await items.allInnerTexts()).map((t) => t.replace(/\s+/g, " ").trim());
  await runCommand(page, "Notifications: Hide Notifications");
  await center.waitFor({ state: "hidden", timeout: T });
  return texts;
}

/** The editor's visible text, with Monaco's non-breaking spaces made plain. */
async function editorText(page) {
  const text = await page.locator(".monaco-editor .view-lines").first().innerText();
  return text.replace(/\u00a0/g, " ");
}

/** Load the workbench and wait for the Cube status bar item. */
async function openWorkbench(page) {
  const t0 = Date.now();
  await page.goto(cfg.url, { timeout: T });
  await page.locator(".monaco-workbench").waitFor({ state: "visible", timeout: T });
  await statusItem(page).waitFor({ state: "visible", timeout: T });
  emit("workbench", { ms: Date.now() - t0 });
  await page.evaluate(`window.__cubeGhost = ${ghostTextInPage.toString()}`);
}

/** Open `file` with Quick Open; return its editor. */
async function openFile(page, file) {
  await page.keyboard.press("Control+P");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: T });
  await input.fill(file);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: file }).first().waitFor({ timeout: T });
  await page.keyboard.press("Enter");
  const editor = page.locator(`.monaco-editor[data-uri$="${file}"]`);
  await editor.waitFor({ state: "visible", timeout: T });
  return editor;
}

/** Put the cursor at the end of `editor`'s document. */
async function toEnd(page, editor) {
  await editor.locator(".view-lines").click();
  await page.keyboard.press("Control+End");
}

/**
 * Launch Chromium, open a page and run `body(page)`; screenshot failure.png on an error; emit
 * `done` or `error` and exit.
 */
function drive(body) {
  let page;
  const main = async () => {
    const browser = await chromium.launch({
      executablePath: cfg.chromium,
      headless: true,
      // From ../shared/tools/setup-code-server.sh: this machine has no internet and no GPU.
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
    });
    try {
      page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
      page.on("pageerror", (error) => emit("pageerror", { message: String(error).slice(0, 300) }));
      await body(page);
    } catch (error) {
      if (page) await page.screenshot({ path: path.join(cfg.artifacts, cfg.failureShot ?? "failure.png") }).catch(() => undefined);
      throw error;
    } finally {
      await browser.close();
    }
  };
  main().then(
    () => { emit("done"); process.exit(0); },
    (error) => { emit("error", { message: String(error && error.stack || error).slice(0, 2000) }); process.exit(1); },
  );
}

module.exports = { cfg, T, emit, ask, waitGhost, runCommand, pick, answerInput, statusItem, toasts, notificationTexts, editorText, openWorkbench, openFile, toEnd, drive };
