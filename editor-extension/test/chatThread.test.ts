import { strict as assert } from "node:assert";
import {
  MAX_TURNS,
  ThreadStore,
  answerHtml,
  codeBlocks,
  isChatDelta,
  isChatResult,
  lineSpan,
  parseWebviewMessage,
  threadHtml,
  threadsHtml,
} from "../src/chatThread";

const about = { chatId: "c1", action: "explain", title: "Cube: Explain", uri: "file:///w/pkg/geometry.py" };
const result = { ...about, markdown: "`area` returns the area.", version: 3, range: [4, 0, 9, 0] as [number, number, number, number] };

describe("chat threads", () => {
  it("merges streamed pieces into one turn, then the result replaces them and ends it", () => {
    const store = new ThreadStore();
    store.delta({ ...about, text: "`area` ret" });
    store.delta({ ...about, text: "urns" });
    assert.equal(store.get("c1")?.turns[0]?.answer, "`area` returns");
    assert.equal(store.get("c1")?.turns[0]?.state, "streaming");
    const thread = store.result(result);
    assert.equal(thread.turns.length, 1);
    assert.deepEqual(thread.turns[0], { question: "Cube: Explain", answer: "`area` returns the area.", state: "done" });
    assert.equal(thread.version, 3);
    assert.deepEqual(thread.range, [4, 0, 9, 0]);
  });

  it("puts a follow-up in the same thread as a new turn, keeping the range", () => {
    const store = new ThreadStore();
    store.result(result);
    store.ask({ chatId: "c1", title: "Cube: Explain", uri: about.uri }, "and the perimeter?");
    store.delta({ ...about, action: "ask", text: "2(w+h)" });
    const thread = store.result({ ...result, action: "ask", markdown: "It is `2 * (w + h)`.", version: 4 });
    assert.deepEqual(
      thread.turns.map((t) => [t.question, t.answer, t.state]),
      [
        ["Cube: Explain", "`area` returns the area.", "done"],
        ["and the perimeter?", "It is `2 * (w + h)`.", "done"],
      ],
    );
    assert.equal(thread.version, 4);
    assert.deepEqual(thread.range, [4, 0, 9, 0]);
  });

  it("keeps threads apart by chatId, most recent first", () => {
    const store = new ThreadStore();
    store.delta({ ...about, text: "one" });
    store.delta({ ...about, chatId: "c2", text: "two" });
    store.delta({ ...about, text: " more" });
    assert.deepEqual(
      store.list().map((t) => t.chatId),
      ["c1", "c2"],
    );
    assert.equal(store.get("c2")?.turns[0]?.answer, "two");
  });

  it("shows a failed request's message in the thread and lets the next question start a new turn", () => {
    const store = new ThreadStore();
    store.result(result);
    store.ask({ chatId: "c1", title: "t", uri: about.uri }, "why?");
    const failed = store.fail("c1", "The question failed: the model is unavailable");
    assert.equal(failed?.turns[1]?.state, "error");
    assert.match(threadHtml(failed!), /class="note error">The question failed: the model is unavailable</);
    store.delta({ ...about, text: "x" });
    assert.equal(store.get("c1")?.turns.length, 3);
  });

  it("a result after the command returned with the same answer adds no turn", () => {
    const store = new ThreadStore();
    store.ask({ chatId: "c1", title: "t", uri: about.uri, version: 1, range: [0, 0, 1, 0] }, "Explain");
    store.finish("c1", undefined, result.markdown);
    store.result(result);
    assert.equal(store.get("c1")?.turns.length, 1);
    assert.equal(store.get("c1")?.version, 3);
  });

  it("bounds the turns of a thread", () => {
    const store = new ThreadStore();
    for (let i = 0; i < MAX_TURNS + 5; i++) {
      store.result({ ...result, markdown: `answer ${i}` });
    }
    const turns = store.get("c1")!.turns;
    assert.equal(turns.length, MAX_TURNS);
    assert.equal(turns.at(-1)?.answer, `answer ${MAX_TURNS + 4}`);
  });
});

describe("code blocks", () => {
  it("finds fenced blocks with and without a language, indented ones and an unterminated last one", () => {
    const markdown = "Here:\n```python\ndef f():\n    return 1\n```\ntext\n```\nx = 2\n```\n\n    indented = 3\n\nthen\n```go\nfunc g() {";
    assert.deepEqual(codeBlocks(markdown), [
      { language: "python", code: "def f():\n    return 1\n" },
      { language: "", code: "x = 2\n" },
      { language: "", code: "indented = 3\n" },
      { language: "go", code: "func g() {" },
    ]);
  });

  it("finds none in prose", () => {
    assert.deepEqual(codeBlocks("just `inline` code"), []);
  });

  it("gets the block an Apply names from the store", () => {
    const store = new ThreadStore();
    store.result({ ...result, markdown: "a\n```\none\n```\n```\ntwo\n```\n" });
    assert.equal(store.block("c1", 0, 1)?.code, "two\n");
    assert.equal(store.block("c1", 0, 2), undefined);
    assert.equal(store.block("c1", 5, 0), undefined);
    assert.equal(store.block("nope", 0, 0), undefined);
  });
});

describe("rendering", () => {
  it("renders markdown, never the model's raw HTML, images or script links", () => {
    const html = answerHtml('`x` <script>alert(1)</script> <img src=x onerror=alert(1)> ![i](https://e.com/i.png) [l](javascript:alert(1))', "c1", 0, true);
    assert.match(html, /<code>x<\/code>/);
    assert.doesNotMatch(html, /<script|<img|onerror=alert\(1\)>|href="javascript/);
    assert.match(html, /&lt;script&gt;/);
  });

  it("gives each code block Apply and Copy buttons numbered in order, and Copy only when Apply cannot work", () => {
    const markdown = "```py\na = 1\n```\n\n    b = 2\n";
    const html = answerHtml(markdown, 'c"1', 2, true);
    assert.equal((html.match(/data-action="apply"/g) ?? []).length, 2);
    assert.match(html, /data-chat="c&quot;1" data-turn="2" data-block="1"/);
    assert.match(html, /<code class="language-py">a = 1\n<\/code>/);
    const copyOnly = answerHtml(markdown, "c1", 0, false);
    assert.equal((copyOnly.match(/data-action="apply"/g) ?? []).length, 0);
    assert.equal((copyOnly.match(/data-action="copy"/g) ?? []).length, 2);
  });

  it("shows the file and lines, a streaming turn, and disables follow-ups while answering", () => {
    const store = new ThreadStore();
    const thread = store.ask({ chatId: "c1", title: "Cube: Explain", uri: "file:///w/my%20geo.py", version: 1, range: [4, 0, 9, 0] }, "Explain");
    const html = threadHtml(thread);
    assert.match(html, /my geo\.py:5-9/);
    assert.match(html, /answering\.\.\./);
    assert.match(html, /<input [^>]*disabled>/);
    assert.doesNotMatch(html, /data-action="apply"/);
    store.result(result);
    assert.doesNotMatch(threadHtml(thread), /disabled|answering/);
    assert.doesNotMatch(threadHtml(thread), /\son[a-z]+=/);
  });

  it("says how to start when there is no thread", () => {
    assert.match(threadsHtml([]), /No chat yet/);
  });

  it("names the lines of a range", () => {
    assert.equal(lineSpan([4, 0, 9, 0]), "5-9");
    assert.equal(lineSpan([4, 2, 4, 9]), "5");
    assert.equal(lineSpan([4, 0, 5, 0]), "5");
    assert.equal(lineSpan([0, 0, 2, 3]), "1-3");
  });
});

describe("message validation", () => {
  it("accepts well-formed server notifications only", () => {
    assert.equal(isChatDelta({ ...about, text: "x" }), true);
    assert.equal(isChatDelta({ ...about, text: 3 }), false);
    assert.equal(isChatDelta(null), false);
    assert.equal(isChatResult(result), true);
    assert.equal(isChatResult({ ...about, markdown: "m" }), true);
    assert.equal(isChatResult({ ...result, markdown: 3 }), false);
    assert.equal(isChatResult({ ...result, range: [1, 2, 3] }), false);
    assert.equal(isChatResult({ ...result, range: [1, 2, 3, -1] }), false);
    assert.equal(isChatResult({ ...result, version: "3" }), false);
  });

  it("accepts the webview's messages it handles and nothing else", () => {
    assert.deepEqual(parseWebviewMessage({ type: "ready" }), { type: "ready" });
    assert.deepEqual(parseWebviewMessage({ type: "followUp", chatId: "c1", text: "  why?  " }), { type: "followUp", chatId: "c1", text: "why?" });
    assert.equal(parseWebviewMessage({ type: "followUp", chatId: "c1", text: "   " }), undefined);
    assert.deepEqual(parseWebviewMessage({ type: "apply", chatId: "c1", turn: 0, block: 1 }), { type: "apply", chatId: "c1", turn: 0, block: 1 });
    assert.equal(parseWebviewMessage({ type: "apply", chatId: "c1", turn: "0", block: 1 }), undefined);
    assert.equal(parseWebviewMessage({ type: "copy", chatId: "c1", turn: 0, block: 1.5 }), undefined);
    assert.equal(parseWebviewMessage({ type: "runCommand", chatId: "c1" }), undefined);
    assert.equal(parseWebviewMessage("ready"), undefined);
  });
});
