/**
 * The chat panel's pure side: threads of question/answer turns kept by chatId, the streamed
 * `cube/chatDelta` pieces merged into them, the final `cube/chatResult`, the code blocks of an answer
 * (what "Apply" and "Copy" act on), validation of every message from cube-lsp and from the webview,
 * and the HTML of a thread. Markdown is rendered here, in the extension host, by markdown-it with
 * `html: false` (raw HTML from the model is shown as text) and no images (nothing remote is loaded).
 * No `vscode` import: unit-tested in plain node.
 */
import MarkdownIt from "markdown-it";

export const CHAT_DELTA_NOTIFICATION = "cube/chatDelta";
export const CHAT_RESULT_NOTIFICATION = "cube/chatResult";
/** cube-lsp's commands, which vscode-languageclient registers itself: the extension only sends them. */
export const SERVER_CHAT_COMMAND = "cube.chat";
export const SERVER_APPLY_COMMAND = "cube.chat.apply";
/** Actions whose answer is an edit of the code (applied by cube-lsp, not shown as prose). */
export const EDIT_ACTIONS: ReadonlySet<string> = new Set(["document", "refactor", "fix"]);
/** Turns kept per thread: the oldest go first (cube-lsp bounds its own history too). */
export const MAX_TURNS = 50;
/** Threads kept: the least recently updated go first. */
export const MAX_THREADS = 30;

/** [startLine, startChar, endLine, endChar], the range form of cube-lsp's chat commands. */
export type ChatRange = [number, number, number, number];

/** The params of `cube/chatDelta`: one new piece of an answer that is streaming. */
export interface ChatDelta {
  chatId: string;
  action: string;
  title: string;
  uri: string;
  text: string;
}

/** The params of `cube/chatResult`: the whole prose answer and the code range it is about. */
export interface ChatResult {
  chatId: string;
  action: string;
  uri: string;
  title: string;
  markdown: string;
  version?: number;
  range?: ChatRange;
}

/** One question and its answer. */
export interface Turn {
  /** What was asked: the action's title, or the follow-up's text. */
  question: string;
  answer: string;
  state: "streaming" | "done" | "error";
  /** Why the turn failed (state "error"), or what became of an Apply (state "done"). */
  note?: string;
}

/** One conversation about one range of one document. */
export interface Thread {
  chatId: string;
  title: string;
  uri: string;
  /** The document version and range the latest answer is about: what Apply and follow-ups use. */
  version?: number;
  range?: ChatRange;
  turns: Turn[];
  updated: number;
}

/** A code block of an answer. */
export interface CodeBlock {
  language: string;
  code: string;
}

/** What the webview may ask of the extension (anything else is ignored). */
export type WebviewMessage =
  | { type: "ready" }
  | { type: "followUp"; chatId: string; text: string }
  | { type: "apply"; chatId: string; turn: number; block: number }
  | { type: "copy"; chatId: string; turn: number; block: number };

function isRange(value: unknown): value is ChatRange {
  return Array.isArray(value) && value.length === 4 && value.every((x) => Number.isInteger(x) && x >= 0);
}

function strings(value: object, keys: string[]): boolean {
  const v = value as Record<string, unknown>;
  return keys.every((key) => typeof v[key] === "string");
}

/** Whether `value` is a well-formed `cube/chatDelta` (a malformed one is ignored). */
export function isChatDelta(value: unknown): value is ChatDelta {
  return typeof value === "object" && value !== null && strings(value, ["chatId", "action", "title", "uri", "text"]);
}

/** Whether `value` is a well-formed `cube/chatResult` (a malformed one is ignored, never shown half). */
export function isChatResult(value: unknown): value is ChatResult {
  if (typeof value !== "object" || value === null || !strings(value, ["chatId", "action", "uri", "title", "markdown"])) {
    return false;
  }
  const v = value as Partial<ChatResult>;
  return (v.version === undefined || Number.isInteger(v.version)) && (v.range === undefined || isRange(v.range));
}

/** The webview's message if it is one the extension handles, else undefined. */
export function parseWebviewMessage(value: unknown): WebviewMessage | undefined {
  if (typeof value !== "object" || value === null) {
    return undefined;
  }
  const v = value as Record<string, unknown>;
  if (v.type === "ready") {
    return { type: "ready" };
  }
  if (typeof v.chatId !== "string") {
    return undefined;
  }
  if (v.type === "followUp" && typeof v.text === "string" && v.text.trim() !== "") {
    return { type: "followUp", chatId: v.chatId, text: v.text.trim() };
  }
  if ((v.type === "apply" || v.type === "copy") && Number.isInteger(v.turn) && Number.isInteger(v.block)) {
    return { type: v.type, chatId: v.chatId, turn: v.turn as number, block: v.block as number };
  }
  return undefined;
}

/** The Markdown renderer of answers: no raw HTML, no images, links shown but never fetched. */
export function createRenderer(): MarkdownIt {
  const md = new MarkdownIt({ html: false, linkify: false, typographer: false });
  md.disable("image");
  return md;
}

const renderer = createRenderer();

/** The fenced and indented code blocks of `markdown`, in order (an unterminated last fence included). */
export function codeBlocks(markdown: string): CodeBlock[] {
  return renderer
    .parse(markdown, {})
    .filter((token) => token.type === "fence" || token.type === "code_block")
    .map((token) => ({ language: token.info.trim().split(/\s+/, 1)[0] ?? "", code: token.content }));
}

/** Every thread of the panel, most recently updated first; all changes go through here. */
export class ThreadStore {
  private readonly threads = new Map<string, Thread>();
  private clock = 0;

  /** The threads, most recently updated first. */
  list(): Thread[] {
    return [...this.threads.values()].sort((a, b) => b.updated - a.updated);
  }

  get(chatId: string): Thread | undefined {
    return this.threads.get(chatId);
  }

  /** Start a thread (the panel's own actions), or a new turn in it, with `question` streaming. */
  ask(about: { chatId: string; title: string; uri: string; version?: number; range?: ChatRange }, question: string): Thread {
    const thread = this.thread(about.chatId, about.title, about.uri);
    thread.version = about.version ?? thread.version;
    thread.range = about.range ?? thread.range;
    this.push(thread, { question, answer: "", state: "streaming" });
    return thread;
  }

  /** Merge one streamed piece: into the thread's streaming turn, or a new turn (a lightbulb action). */
  delta(delta: ChatDelta): Thread {
    const thread = this.thread(delta.chatId, delta.title, delta.uri);
    let turn = thread.turns.at(-1);
    if (!turn || turn.state !== "streaming") {
      turn = { question: delta.title, answer: "", state: "streaming" };
      this.push(thread, turn);
    }
    turn.answer += delta.text;
    this.touch(thread);
    return thread;
  }

  /** The whole answer: replaces what streamed (the result is authoritative) and ends the turn. */
  result(result: ChatResult): Thread {
    const thread = this.thread(result.chatId, result.title, result.uri);
    let turn = thread.turns.at(-1);
    const finished = turn?.state === "done" && turn.answer === result.markdown;
    if (!turn || (turn.state !== "streaming" && !finished)) {
      turn = { question: result.title, answer: "", state: "streaming" };
      this.push(thread, turn);
    }
    turn.answer = result.markdown;
    turn.state = "done";
    thread.version = result.version ?? thread.version;
    thread.range = result.range ?? thread.range;
    this.touch(thread);
    return thread;
  }

  /** End the streaming turn of `chatId` with `message` as its error (a failed request). */
  fail(chatId: string, message: string): Thread | undefined {
    const thread = this.threads.get(chatId);
    const turn = thread?.turns.at(-1);
    if (!thread || !turn) {
      return undefined;
    }
    turn.state = "error";
    turn.note = message;
    this.touch(thread);
    return thread;
  }

  /**
   * End the streaming turn of `chatId` when its request returned: with the answer the command
   * returned, in case no `cube/chatResult` came before (a result that comes after changes nothing).
   */
  finish(chatId: string, note?: string, answer?: string): Thread | undefined {
    const thread = this.threads.get(chatId);
    const turn = thread?.turns.at(-1);
    if (!thread || !turn || turn.state !== "streaming") {
      return undefined;
    }
    turn.state = "done";
    turn.note = note;
    turn.answer = answer ?? turn.answer;
    this.touch(thread);
    return thread;
  }

  /** Say what became of an Apply under the turn it came from. */
  note(chatId: string, turnIndex: number, note: string): Thread | undefined {
    const thread = this.threads.get(chatId);
    const turn = thread?.turns[turnIndex];
    if (!thread || !turn) {
      return undefined;
    }
    turn.note = note;
    this.touch(thread);
    return thread;
  }

  /** Code block `block` of turn `turn` of `chatId`, if there is one. */
  block(chatId: string, turn: number, block: number): CodeBlock | undefined {
    const answer = this.threads.get(chatId)?.turns[turn]?.answer;
    return answer === undefined ? undefined : codeBlocks(answer)[block];
  }

  private thread(chatId: string, title: string, uri: string): Thread {
    let thread = this.threads.get(chatId);
    if (!thread) {
      thread = { chatId, title, uri, turns: [], updated: 0 };
      this.threads.set(chatId, thread);
      this.touch(thread);
      for (const old of this.list().slice(MAX_THREADS)) {
        this.threads.delete(old.chatId);
      }
    }
    return thread;
  }

  private push(thread: Thread, turn: Turn): void {
    thread.turns.push(turn);
    thread.turns.splice(0, Math.max(0, thread.turns.length - MAX_TURNS));
    this.touch(thread);
  }

  private touch(thread: Thread): void {
    this.clock += 1;
    thread.updated = this.clock;
  }
}

/** Escape text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c);
}

/** The file name of a `file://` URI, for headings. */
export function fileName(uri: string): string {
  const path = uri.replace(/^[a-z]+:\/\//i, "");
  try {
    return decodeURIComponent(path).split("/").pop() || uri;
  } catch {
    return path.split("/").pop() || uri;
  }
}

/**
 * The answer of turn `turn` of thread `chatId` as HTML: markdown-it's output with each code block
 * wrapped in a bar of "Apply" and "Copy" buttons. The buttons carry data-* attributes only; the
 * page's one script (by nonce) handles their clicks.
 */
export function answerHtml(markdown: string, chatId: string, turn: number, canApply: boolean): string {
  const md = createRenderer();
  const fence = md.renderer.rules.fence;
  const code = md.renderer.rules.code_block;
  let index = 0;
  const wrap = (inner: string): string => {
    const data = `data-chat="${escapeHtml(chatId)}" data-turn="${turn}" data-block="${index++}"`;
    const apply = canApply ? `<button class="apply" data-action="apply" ${data}>Apply</button>` : "";
    return `<div class="code">${inner}<div class="bar">${apply}<button class="copy" data-action="copy" ${data}>Copy</button></div></div>\n`;
  };
  md.renderer.rules.fence = (tokens, idx, options, env, self) => wrap(fence ? fence(tokens, idx, options, env, self) : "");
  md.renderer.rules.code_block = (tokens, idx, options, env, self) => wrap(code ? code(tokens, idx, options, env, self) : "");
  return md.render(markdown);
}

/** The 1-based lines a range covers, "3-7" (a range ending at a line's start ends on the line before). */
export function lineSpan(range: ChatRange): string {
  const [startLine, , endLine, endChar] = range;
  const last = endChar === 0 && endLine > startLine ? endLine : endLine + 1;
  return last === startLine + 1 ? `${last}` : `${startLine + 1}-${last}`;
}

/** One thread as HTML: its heading, its turns, and the follow-up box. */
export function threadHtml(thread: Thread): string {
  const where = thread.range ? `:${lineSpan(thread.range)}` : "";
  const busy = thread.turns.at(-1)?.state === "streaming";
  const turns = thread.turns
    .map((turn, i) => {
      const state = turn.state === "streaming" ? '<p class="state">answering...</p>' : "";
      const note = turn.note ? `<p class="note ${turn.state === "error" ? "error" : ""}">${escapeHtml(turn.note)}</p>` : "";
      const canApply = turn.state === "done" && thread.version !== undefined && thread.range !== undefined;
      return (
        `<div class="turn" data-turn="${i}"><p class="question">${escapeHtml(turn.question)}</p>` +
        `<div class="answer">${answerHtml(turn.answer, thread.chatId, i, canApply)}</div>${state}${note}</div>`
      );
    })
    .join("");
  const id = escapeHtml(thread.chatId);
  const disabled = busy || thread.range === undefined ? " disabled" : "";
  return (
    `<section class="thread" data-chat="${id}"><h2>${escapeHtml(thread.title)} <span class="file">${escapeHtml(fileName(thread.uri))}${where}</span></h2>` +
    `${turns}<form class="follow-up" data-chat="${id}"><input name="question" placeholder="Ask a follow-up question" aria-label="Follow-up question"${disabled}>` +
    `<button type="submit"${disabled}>Ask</button></form></section>`
  );
}

/** Every thread, most recent first, or a hint when there is none. */
export function threadsHtml(threads: Thread[]): string {
  if (threads.length === 0) {
    return '<p class="empty">No chat yet: select code and run Cube: Explain (editor context menu, Cube), or a Cube action from the lightbulb.</p>';
  }
  return threads.map(threadHtml).join("");
}
