/**
 * The pure part of reviewing chat edits: which `workspace/applyEdit` requests are cube-lsp's chat
 * edits (every edit annotated `cube.chat`, see cube_lsp/chat/lsp_convert.py `workspace_edit`), the
 * text the document would have after them, and the same edit without its annotation (applied after
 * Accept, so VS Code does not ask a second time). No `vscode` import: unit-tested with mocha.
 */

/** The change annotation cube-lsp puts on chat edits that need confirmation. */
export const CHAT_ANNOTATION = "cube.chat";

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export interface TextEdit {
  range: Range;
  newText: string;
  annotationId?: string;
}

/** The parts of LSP's WorkspaceEdit and ApplyWorkspaceEditParams read here. */
export interface WorkspaceEditLike {
  changes?: Record<string, TextEdit[]>;
  documentChanges?: unknown[];
  changeAnnotations?: Record<string, { label?: string; needsConfirmation?: boolean; description?: string }>;
}

export interface ApplyEditParamsLike {
  label?: string;
  edit: WorkspaceEditLike;
}

/** A chat edit to review: one document, the version it was computed for, its edits. */
export interface ChatEdit {
  uri: string;
  /** null: any version (LSP's OptionalVersionedTextDocumentIdentifier). */
  version: number | null;
  edits: TextEdit[];
  /** What the edit is, e.g. "Cube: Add documentation". */
  label: string;
}

interface TextDocumentEditLike {
  textDocument: { uri: string; version?: number | null };
  edits: TextEdit[];
}

function isTextDocumentEdit(change: unknown): change is TextDocumentEditLike {
  if (change === null || typeof change !== "object") {
    return false;
  }
  const { textDocument, edits } = change as Partial<TextDocumentEditLike>;
  return typeof textDocument?.uri === "string" && Array.isArray(edits);
}

/**
 * The chat edit in `params`, or undefined when it is anything else (several documents, file
 * operations, edits without the `cube.chat` annotation): those keep VS Code's own handling.
 */
export function chatEdit(params: ApplyEditParamsLike): ChatEdit | undefined {
  const { edit } = params;
  const annotation = edit.changeAnnotations?.[CHAT_ANNOTATION];
  if (!annotation || edit.changes !== undefined || edit.documentChanges?.length !== 1) {
    return undefined;
  }
  const [change] = edit.documentChanges;
  if (!isTextDocumentEdit(change) || change.edits.length === 0) {
    return undefined;
  }
  if (!change.edits.every((e) => e.annotationId === CHAT_ANNOTATION)) {
    return undefined;
  }
  const version = typeof change.textDocument.version === "number" ? change.textDocument.version : null;
  const label = params.label ?? annotation.label ?? "Cube: chat edit";
  return { uri: change.textDocument.uri, version, edits: change.edits, label };
}

/** The same request with the `cube.chat` annotation removed: applied as is, without a preview. */
export function withoutAnnotation<T extends ApplyEditParamsLike>(params: T): T {
  const { changeAnnotations, documentChanges, ...rest } = params.edit;
  const annotations = { ...changeAnnotations };
  delete annotations[CHAT_ANNOTATION];
  const plainChanges = documentChanges?.map((change) =>
    isTextDocumentEdit(change) ? { ...change, edits: change.edits.map(({ range, newText }) => ({ range, newText })) } : change,
  );
  const edit: WorkspaceEditLike = { ...rest, documentChanges: plainChanges };
  if (Object.keys(annotations).length > 0) {
    edit.changeAnnotations = annotations;
  }
  return { ...params, edit };
}

/** Offsets of the start of each line: LSP lines end at \n, \r\n or \r. */
function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 13 /* \r */) {
      if (text.charCodeAt(i + 1) === 10) {
        i++;
      }
      starts.push(i + 1);
    } else if (c === 10 /* \n */) {
      starts.push(i + 1);
    }
  }
  return starts;
}

/** The UTF-16 offset of `position` in `text`, clamped to its line as LSP says. */
function offsetAt(text: string, starts: number[], position: Position): number {
  if (position.line >= starts.length) {
    return text.length;
  }
  const start = starts[Math.max(0, position.line)];
  let end = position.line + 1 < starts.length ? starts[position.line + 1] : text.length;
  // The line's content ends before its line break.
  while (end > start && (text[end - 1] === "\n" || text[end - 1] === "\r")) {
    end--;
  }
  return Math.min(start + Math.max(0, position.character), end);
}

/**
 * `text` after `edits` (positions in UTF-16 code units, VS Code's encoding, all relative to the
 * original text as LSP says; they must not overlap). Throws on overlapping edits.
 */
export function applyEdits(text: string, edits: TextEdit[]): string {
  const starts = lineStarts(text);
  const spans = edits
    .map((e, index) => ({ from: offsetAt(text, starts, e.range.start), to: offsetAt(text, starts, e.range.end), text: e.newText, index }))
    .sort((a, b) => a.from - b.from || a.index - b.index);
  let out = "";
  let at = 0;
  for (const span of spans) {
    if (span.from < at || span.to < span.from) {
      throw new Error("overlapping or reversed edits");
    }
    out += text.slice(at, span.from) + span.text;
    at = span.to;
  }
  return out + text.slice(at);
}

/** "Cube: Add documentation" -> "Cube: Add documentation — review" (the diff editor's title). */
export function reviewTitle(label: string): string {
  return `${label.startsWith("Cube") ? label : `Cube: ${label}`} — review`;
}
