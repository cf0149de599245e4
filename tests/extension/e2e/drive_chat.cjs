/**
 * Chat in a real VS Code (code-server in headless Chromium, playwright-core), for
 * tests/extension/test_vscode_chat.py, against the scripted chat answers of the test's backend:
 *
 * a. Select `add`, run Cube > Add Documentation from the editor's context menu: a diff of the file
 *    against the proposed text opens (`review`: its title and right side); Accept in its title bar;
 *    the saved file is read by the test (`saved-apply`).
 * b. Select `scale`, run "Cube: Add documentation" from the quick-fix (lightbulb) menu: Reject in
 *    the notification that comes with the diff; the saved file is unchanged (`saved-discard`). Again
 *    from the palette, but the file changes during the review: Accept applies nothing and says why
 *    (`stale`, `saved-stale`).
 * c. Select `add`, run Cube: Explain: the chat panel opens and shows the first streamed piece while
 *    the backend holds the rest (`streaming`: the test releases it), then the rendered answer; a
 *    follow-up question gets its answer in the same thread; Apply on its code block opens the review
 *    diff, Accept changes the document (`saved-follow-up`); a follow-up the backend fails
 *    shows the error in the thread.
 *
 * Events and waits as in vscode_page.cjs: no sleeps.
 */
"use strict";
const path = require("node:path");
const { cfg, T, emit, ask, runCommand, toasts, openWorkbench, openFile, drive } = require("./vscode_page.cjs");

/** The chat panel's page (the webview's inner frame). */
function chatFrame(page) {
  return page.frameLocator("iframe.webview.ready").frameLocator("iframe#active-frame");
}

/** Select lines `from`..`to` (1-based, whole lines) of the focused editor with the keyboard. */
async function selectLines(page, editor, from, to) {
  await editor.locator(".view-lines").click();
  await page.keyboard.press("Control+Home");
  for (let i = 1; i < from; i++) await page.keyboard.press("ArrowDown");
  await page.keyboard.press("Home");
  await page.keyboard.press("Home"); // twice: the first stops at the indentation
  for (let i = from; i < to; i++) await page.keyboard.press("Shift+ArrowDown");
  await page.keyboard.press("Shift+End");
}

/** How many notification toasts including `text` are on screen. */
function visibleToasts(page, text) {
  return page.evaluate(
    (want) => [...document.querySelectorAll(".notifications-toasts .notification-toast")].filter((el) => el.offsetParent !== null && el.innerText.includes(want)).length,
    text,
  );
}

/** The open review diff (cube.chat edits): wait for it, emit its title and proposed text as `event`. */
async function reviewDiff(page, event) {
  const diff = page.locator(".monaco-diff-editor");
  await diff.locator(".editor.modified .view-lines:not(.line-delete)").waitFor({ state: "visible", timeout: T });
  await page.locator(".editor-actions [aria-label^='Accept']").first().waitFor({ state: "visible", timeout: T });
  const tab = page.locator(".tab", { hasText: "— review" }).first();
  const proposed = (await diff.locator(".editor.modified .view-lines:not(.line-delete)").innerText()).replace(/\u00a0/g, " ");
  emit(event, { title: (await tab.innerText()).trim(), proposed });
}

/** Accept or Reject the review with the diff's title bar button. */
async function decideInTitle(page, label) {
  await page.locator(`.editor-actions [aria-label^='${label}']`).first().click();
  await page.locator(".monaco-diff-editor").waitFor({ state: "detached", timeout: T });
}

/** Accept or Reject the review with the notification's button (the keyboard's way). */
async function decideInNotification(page, label) {
  const toast = toasts(page, "accept the changes shown in the diff").last();
  await toast.waitFor({ state: "visible", timeout: T });
  await toast.locator(".monaco-button", { hasText: new RegExp(`^\\s*${label}\\s*$`) }).click();
  await page.locator(".monaco-diff-editor").waitFor({ state: "detached", timeout: T });
}

/**
 * Let the test read the saved file: the exact text, not the rendering. `landed`: text the edit puts
 * in the editor, waited for first. VS Code saves files a refactoring changed by itself
 * (`files.refactoring.autoSave`); Ctrl+S covers that being off, and no tab stays dirty after it.
 */
async function saveAndCheck(page, editor, event, landed) {
  if (landed) {
    await page.waitForFunction(
      ([uri, want]) => {
        const lines = document.querySelector(`.monaco-editor[data-uri$="${uri}"] .view-lines`);
        return lines !== null && lines.innerText.replace(/\u00a0/g, " ").includes(want);
      },
      [cfg.file, landed],
      { timeout: T },
    );
  }
  await editor.locator(".view-lines").click();
  await page.keyboard.press("Control+S");
  await page.locator(".tab.dirty", { hasText: cfg.file }).waitFor({ state: "detached", timeout: T });
  await ask(event);
}

drive(async (page) => {
  await openWorkbench(page);
  const editor = await openFile(page, cfg.file);
  await runCommand(page, "Cube: Use Local Stack");
  await toasts(page, "using the local cube-stack").first().waitFor({ timeout: T });
  // The start-up offer of the stack, if it came at all, is not left on screen once the user chose.
  emit("offers-after-command", { visible: await visibleToasts(page, "Use it for completions") });

  // a. Add documentation from the context menu's Cube submenu; Accept in the review diff's title bar.
  await selectLines(page, editor, cfg.add[0], cfg.add[1]);
  await editor.locator(".view-lines").click({ button: "right", position: { x: 40, y: 5 } });
  // Exact labels: a submenu's items are inside the item that opens it, whose text includes theirs.
  const menuItem = (label) => page.locator(".context-view .action-menu-item", { hasText: new RegExp(`^\\s*${label}\\s*$`) }).first();
  await menuItem("Cube").hover();
  // Hover focuses an item and Enter runs it: a synthetic click on a submenu item does not run it here.
  await menuItem("Add Documentation").hover();
  await page.locator(".context-view .action-menu-item:focus", { hasText: /^\s*Add Documentation\s*$/ }).waitFor({ timeout: T });
  await page.keyboard.press("Enter");
  await reviewDiff(page, "review");
  await page.screenshot({ path: path.join(cfg.artifacts, "chat-review-diff.png") });
  emit("offers-at-review", { visible: await visibleToasts(page, "Use it for completions") });
  await decideInTitle(page, "Accept");
  emit("decided-in-title", { toasts: await visibleToasts(page, "accept the changes shown in the diff") });
  // The command returns once VS Code answered cube-lsp's applyEdit, and the extension says so.
  await page.locator(".statusbar-item", { hasText: "Add documentation: applied" }).waitFor({ timeout: T });
  await saveAndCheck(page, editor, "saved-apply", cfg.docstring);

  // b. The same from the lightbulb's quick-fix menu, on another function; Reject in the notification.
  await selectLines(page, editor, cfg.scale[0], cfg.scale[1]);
  await page.keyboard.press("Control+.");
  const action = page.locator(".action-widget .monaco-list-row", { hasText: "Add documentation" }).first();
  await action.waitFor({ state: "visible", timeout: T });
  await action.click();
  await reviewDiff(page, "review-scale");
  await decideInNotification(page, "Reject");
  await saveAndCheck(page, editor, "saved-discard");

  // b2. Again from the palette; the file changes during the review (a key and Backspace: a new
  // version, the same text), then Accept: nothing is applied and the user is told why.
  await selectLines(page, editor, cfg.scale[0], cfg.scale[1]);
  await runCommand(page, "Cube: Add Documentation");
  await reviewDiff(page, "review-stale");
  await page.locator('.tab[aria-label="calc.py"]').click();
  await page.keyboard.press("Control+End");
  await page.keyboard.type("#");
  await page.keyboard.press("Backspace");
  await page.locator(".tab", { hasText: "— review" }).first().click();
  await decideInTitle(page, "Accept");
  const stale = toasts(page, "changed during the review").first();
  await stale.waitFor({ timeout: T });
  emit("stale", { toast: (await stale.innerText()).replace(/\s+/g, " ") });
  await saveAndCheck(page, editor, "saved-stale");

  // c. Explain streams into the chat panel; a follow-up in the same thread; Apply a code block.
  await selectLines(page, editor, cfg.explain[0], cfg.explain[1]);
  await runCommand(page, "Cube: Explain");
  const chat = chatFrame(page);
  const firstTurn = chat.locator(".turn").first();
  await firstTurn.locator(".answer", { hasText: cfg.firstPiece }).waitFor({ timeout: T });
  const streaming = { text: await firstTurn.innerText(), answering: await firstTurn.locator(".state").count() };
  await page.screenshot({ path: path.join(cfg.artifacts, "chat-streaming.png") });
  await ask("streaming", streaming);
  await firstTurn.locator(".state").waitFor({ state: "detached", timeout: T });
  const rendered = await firstTurn.locator(".answer code").allInnerTexts();
  emit("explained", { rendered, text: await firstTurn.locator(".answer").innerText() });

  const input = chat.locator(".follow-up input");
  await input.fill(cfg.question);
  await input.press("Enter");
  const secondTurn = chat.locator(".turn").nth(1);
  const applyBlock = secondTurn.locator("button[data-action=apply]").first();
  await applyBlock.waitFor({ timeout: T });
  await page.screenshot({ path: path.join(cfg.artifacts, "chat-follow-up.png") });
  emit("followed-up", {
    threads: await chat.locator("section.thread").count(),
    question: await secondTurn.locator(".question").innerText(),
    answer: await secondTurn.locator(".answer").innerText(),
  });
  await applyBlock.click();
  await reviewDiff(page, "review-apply");
  await decideInTitle(page, "Accept");
  await secondTurn.locator(".note", { hasText: "Applied." }).waitFor({ timeout: T });
  await page.screenshot({ path: path.join(cfg.artifacts, "chat-applied.png") });
  emit("applied-note", { note: await secondTurn.locator(".note").innerText() });
  await saveAndCheck(page, editor, "saved-follow-up", cfg.applied);

  // A follow-up the backend fails: the error is said in the thread, and the box works again.
  await input.fill(cfg.failingQuestion);
  await input.press("Enter");
  const failed = chat.locator(".turn").nth(2).locator(".note.error");
  await failed.waitFor({ timeout: T });
  await page.screenshot({ path: path.join(cfg.artifacts, "chat-follow-up-failed.png") });
  emit("follow-up-failed", { note: await failed.innerText(), inputEnabled: await input.isEnabled() });
});
