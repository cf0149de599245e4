/**
 * `Cube: Search Workspace`: a QuickPick fed by cube-lsp's `cube/search` as you type (debounced, the
 * previous request cancelled), each row with the snippet as detail; choosing one opens the location.
 */
import * as vscode from "vscode";
import type { CommandContext } from "./commands";
import { SEARCH_DEBOUNCE_MS, SEARCH_REQUEST, SearchPick, searchParams, searchPicks } from "./searchItems";

type PickItem = vscode.QuickPickItem & { pick?: SearchPick };

/** Show the search QuickPick. */
export async function searchWorkspace(ctx: CommandContext): Promise<void> {
  const client = ctx.client.client;
  if (!client?.isRunning()) {
    void vscode.window.showWarningMessage("Cube: cube-lsp is not running; run Cube: Restart Server.");
    return;
  }
  const quickPick = vscode.window.createQuickPick<PickItem>();
  quickPick.title = "Cube: Search Workspace";
  quickPick.placeholder = "What are you looking for? (add path:src/** to filter)";
  quickPick.matchOnDescription = false;
  quickPick.matchOnDetail = false;
  let timer: NodeJS.Timeout | undefined;
  let pending: vscode.CancellationTokenSource | undefined;

  const ask = async (typed: string): Promise<void> => {
    pending?.cancel();
    const params = searchParams(typed);
    if (!params) {
      quickPick.items = [];
      quickPick.busy = false;
      return;
    }
    const cancel = (pending = new vscode.CancellationTokenSource());
    quickPick.busy = true;
    try {
      const answer = await client.sendRequest(SEARCH_REQUEST, params, cancel.token);
      if (cancel.token.isCancellationRequested) {
        return;
      }
      // The rows are already ranked: keep VS Code from filtering them again by label.
      quickPick.items = searchPicks(answer).map((pick) => ({ label: pick.label, description: pick.description, detail: pick.detail, alwaysShow: true, pick }));
      if (quickPick.items.length === 0) {
        quickPick.items = [{ label: "No results", alwaysShow: true }];
      }
    } catch (error) {
      if (!cancel.token.isCancellationRequested) {
        const message = error instanceof Error ? error.message : String(error);
        quickPick.items = [{ label: "$(error) Search failed", detail: message, alwaysShow: true }];
        ctx.output.warn(`cube: search failed (${message.split("\n", 1)[0]})`);
      }
    } finally {
      if (pending === cancel) {
        quickPick.busy = false;
      }
    }
  };

  quickPick.onDidChangeValue((typed) => {
    if (timer !== undefined) {
      clearTimeout(timer);
    }
    timer = setTimeout(() => void ask(typed), SEARCH_DEBOUNCE_MS);
  });
  quickPick.onDidAccept(async () => {
    const chosen = quickPick.selectedItems[0]?.pick;
    if (!chosen) {
      return;
    }
    quickPick.hide();
    const position = new vscode.Position(chosen.line, 0);
    const document = await vscode.workspace.openTextDocument(vscode.Uri.parse(chosen.uri));
    await vscode.window.showTextDocument(document, { selection: new vscode.Range(position, position) });
  });
  quickPick.onDidHide(() => {
    pending?.cancel();
    if (timer !== undefined) {
      clearTimeout(timer);
    }
    quickPick.dispose();
  });
  quickPick.show();
}
