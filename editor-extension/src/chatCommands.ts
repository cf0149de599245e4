/**
 * The chat commands of the editor's context menu (submenu "Cube") and the palette: each runs
 * cube-lsp's `cube.chat` on the current selection (whole lines; the line under the cursor when
 * nothing is selected). Refactor and Ask ask for the instruction first. Their ids are not the
 * server's `cube.chat` / `cube.chat.apply`, which vscode-languageclient registers itself.
 */
import * as vscode from "vscode";
import type { ChatPanel } from "./chatPanel";
import type { ChatRange } from "./chatThread";

/** One chat action as the editor offers it. */
interface ChatAction {
  action: string;
  title: string;
  /** The input box shown first, for actions that need an instruction. */
  prompt?: { title: string; placeHolder: string };
}

export const CHAT_ACTIONS: Record<string, ChatAction> = {
  explain: { action: "explain", title: "Cube: Explain" },
  document: { action: "document", title: "Cube: Add documentation" },
  refactor: {
    action: "refactor",
    title: "Cube: Refactor",
    prompt: { title: "Cube: Refactor - what should change?", placeHolder: "e.g. use a dataclass; split into two functions" },
  },
  tests: { action: "tests", title: "Cube: Write tests" },
  ask: { action: "ask", title: "Cube: Ask", prompt: { title: "Cube: Ask about the selection", placeHolder: "a question about this code" } },
};

/** Run chat action `name` on the active editor's selection. */
export async function runChatAction(chat: ChatPanel, name: keyof typeof CHAT_ACTIONS): Promise<void> {
  const spec = CHAT_ACTIONS[name];
  const editor = vscode.window.activeTextEditor;
  if (!spec || !editor) {
    void vscode.window.showInformationMessage("Cube: select some code in an editor first.");
    return;
  }
  const { selection, document } = editor;
  const range: ChatRange = [selection.start.line, selection.start.character, selection.end.line, selection.end.character];
  let instruction: string | undefined;
  if (spec.prompt) {
    instruction = (await vscode.window.showInputBox({ ...spec.prompt, ignoreFocusOut: true }))?.trim();
    if (!instruction) {
      return;
    }
  }
  const question = instruction ?? spec.title.replace(/^Cube: /, "");
  await chat.run({ action: spec.action, uri: document.uri.toString(), range, version: document.version, instruction }, question, spec.title);
}
