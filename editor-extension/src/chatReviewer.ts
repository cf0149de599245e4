/**
 * Chat edits reviewed in a real diff: cube-lsp's `workspace/applyEdit` requests whose edits carry the
 * `cube.chat` annotation open `vscode.diff` of the document against the proposed text (a read-only
 * `cube-review:` document), with Accept / Reject in the diff's title bar and in a notification (for
 * the keyboard). Accept applies the edit without its annotation through the language client's own
 * handler and answers `{applied: true}`; Reject or closing the diff answers `{applied: false}`, which
 * cube-lsp reports as "discarded". Every other edit keeps the default handling.
 */
import * as vscode from "vscode";
import { ApplyWorkspaceEditParams, CancellationToken, ApplyWorkspaceEditRequest, ApplyWorkspaceEditResult, ResponseError } from "vscode-languageclient/node";
import { ChatEdit, applyEdits, chatEdit, reviewTitle, withoutAnnotation } from "./chatReview";

export const REVIEW_SCHEME = "cube-review";

type Next = ApplyWorkspaceEditRequest.HandlerSignature;

/** One open review: the diff's right side and how to answer cube-lsp. */
interface Review {
  edit: ChatEdit;
  params: ApplyWorkspaceEditParams;
  proposed: vscode.Uri;
  next: Next;
  settle(result: ApplyWorkspaceEditResult): void;
  /** Its notification is still up (not answered). */
  notifying: boolean;
}

export class ChatReviewer implements vscode.TextDocumentContentProvider, vscode.Disposable {
  /** Open reviews by the reviewed document's URI: one per document. */
  private readonly reviews = new Map<string, Review>();
  private readonly contents = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;
  private readonly subscriptions: vscode.Disposable[];
  private counter = 0;

  constructor(private readonly output: vscode.LogOutputChannel) {
    this.subscriptions = [
      vscode.workspace.registerTextDocumentContentProvider(REVIEW_SCHEME, this),
      // Closing the diff is a Reject.
      vscode.window.tabGroups.onDidChangeTabs((event) => {
        for (const tab of event.closed) {
          const review = this.byProposed(proposedOf(tab));
          if (review) {
            this.finish(review, { applied: false });
          }
        }
      }),
      this.changed,
    ];
  }

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.contents.get(uri.toString()) ?? "";
  }

  /** The language client's `handleApplyEdit` middleware. */
  handleApplyEdit(params: ApplyWorkspaceEditParams, next: Next): ReturnType<Next> {
    const edit = chatEdit(params);
    return edit ? this.review(edit, params, next) : next(params, CancellationToken.None);
  }

  private async review(edit: ChatEdit, params: ApplyWorkspaceEditParams, next: Next): Promise<ApplyWorkspaceEditResult> {
    let document: vscode.TextDocument;
    let proposedText: string;
    try {
      document = await vscode.workspace.openTextDocument(vscode.Uri.parse(edit.uri));
      if (edit.version !== null && document.version !== edit.version) {
        return { applied: false, failureReason: "the document changed since the edit was computed" };
      }
      proposedText = applyEdits(document.getText(), edit.edits);
    } catch (error) {
      return { applied: false, failureReason: error instanceof Error ? error.message : String(error) };
    }
    const previous = this.reviews.get(edit.uri);
    if (previous) {
      // A second review of the same document replaces the first, which counts as rejected.
      await this.finish(previous, { applied: false });
    }
    const name = document.uri.path.split("/").pop() ?? "proposed";
    // The same file name (so the language and icon match) under a path of its own per review.
    const proposed = vscode.Uri.from({ scheme: REVIEW_SCHEME, path: `/${++this.counter}/${name}`, query: edit.uri });
    this.contents.set(proposed.toString(), proposedText);
    const answer = new Promise<ApplyWorkspaceEditResult>((resolve) => {
      this.reviews.set(edit.uri, { edit, params, proposed, next, settle: resolve, notifying: true });
    });
    const title = reviewTitle(edit.label);
    // In the group that shows the document (not the chat panel's, when Apply came from there).
    const shown = vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === document.uri.toString());
    const options: vscode.TextDocumentShowOptions = { preview: false, viewColumn: shown?.viewColumn ?? vscode.ViewColumn.Active };
    await vscode.commands.executeCommand("vscode.diff", document.uri, proposed, title, options);
    void this.offer(edit.uri, proposed, title);
    return answer;
  }

  /** The notification with the same two buttons, for the keyboard (and when the title bar is hidden). */
  private async offer(uri: string, proposed: vscode.Uri, title: string): Promise<void> {
    const choice = await vscode.window.showInformationMessage(`${title}: accept the changes shown in the diff?`, "Accept", "Reject");
    const review = this.reviews.get(uri);
    if (review?.proposed.toString() === proposed.toString()) {
      review.notifying = false;
      if (choice) {
        await this.decide(proposed, choice === "Accept");
      }
    }
  }

  /**
   * Accept or Reject the review shown by `uri` (the diff's right side, as the title bar buttons pass
   * it), else the active editor's, else the only one open (commands cube.acceptReview / rejectReview).
   */
  async decide(uri: unknown, accept: boolean): Promise<void> {
    const target = uri instanceof vscode.Uri ? uri : vscode.window.activeTextEditor?.document.uri;
    const review = this.byProposed(target) ?? (this.reviews.size === 1 ? [...this.reviews.values()][0] : undefined);
    if (!review) {
      return;
    }
    if (!accept) {
      await this.finish(review, { applied: false });
      return;
    }
    // Taken out first: a second click, or the diff closing below, must not answer again.
    this.reviews.delete(review.edit.uri);
    let result: ApplyWorkspaceEditResult;
    try {
      const document = vscode.workspace.textDocuments.find((d) => d.uri.toString() === review.edit.uri);
      if (review.edit.version !== null && document && document.version !== review.edit.version) {
        result = { applied: false, failureReason: "the document changed during the review" };
        void vscode.window.showWarningMessage(`${reviewTitle(review.edit.label)}: the document changed during the review; nothing applied.`);
      } else {
        const applied = await review.next(withoutAnnotation(review.params), CancellationToken.None);
        result = applied instanceof ResponseError ? { applied: false, failureReason: applied.message } : applied;
      }
    } catch (error) {
      this.output.warn(`cube: applying the reviewed edit failed (${error instanceof Error ? error.name : "error"})`);
      result = { applied: false, failureReason: "the edit could not be applied" };
    }
    await this.finish(review, result);
  }

  /** Answer cube-lsp once and close the review's diff. */
  private async finish(review: Review, result: ApplyWorkspaceEditResult): Promise<void> {
    if (this.reviews.get(review.edit.uri) === review) {
      this.reviews.delete(review.edit.uri);
    }
    review.settle(result);
    if (review.notifying) {
      // Decided in the diff: its Accept / Reject toast would stay up for nothing. Toasts cannot be
      // closed one by one; this hides them to the notification centre.
      review.notifying = false;
      await vscode.commands.executeCommand("notifications.hideToasts").then(undefined, () => undefined);
    }
    const key = review.proposed.toString();
    const tabs = vscode.window.tabGroups.all.flatMap((group) => group.tabs).filter((tab) => proposedOf(tab)?.toString() === key);
    if (tabs.length > 0) {
      await vscode.window.tabGroups.close(tabs).then(undefined, () => undefined);
    }
    this.contents.delete(key);
  }

  private byProposed(uri: vscode.Uri | undefined): Review | undefined {
    if (uri?.scheme !== REVIEW_SCHEME) {
      return undefined;
    }
    const key = uri.toString();
    return [...this.reviews.values()].find((review) => review.proposed.toString() === key);
  }

  dispose(): void {
    for (const review of [...this.reviews.values()]) {
      review.settle({ applied: false });
    }
    this.reviews.clear();
    for (const sub of this.subscriptions) {
      sub.dispose();
    }
  }
}

/** The `cube-review:` side of a diff tab, if it is one. */
function proposedOf(tab: vscode.Tab): vscode.Uri | undefined {
  const input = tab.input;
  if (input instanceof vscode.TabInputTextDiff && input.modified.scheme === REVIEW_SCHEME) {
    return input.modified;
  }
  return undefined;
}
