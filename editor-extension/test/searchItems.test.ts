import { strict as assert } from "node:assert";
import { searchParams, searchPicks } from "../src/searchItems";

describe("search QuickPick", () => {
  it("turns typed words into a query, path: words into a glob", () => {
    assert.deepEqual(searchParams("  refresh   token "), { query: "refresh token", limit: 30 });
    assert.deepEqual(searchParams("refresh path:src/** token"), { query: "refresh token", limit: 30, pathGlob: "src/**" });
    assert.equal(searchParams("   "), undefined);
    assert.equal(searchParams("path:src/**"), undefined);
  });

  it("shows symbol, path:line and the snippet's first lines; opens the 0-based line", () => {
    const picks = searchPicks({
      items: [
        { uri: "file:///w/a.py", path: "a.py", startLine: 10, endLine: 14, symbol: "Session.refresh", score: 0.03, snippet: "def refresh(self):\n\n    return 1\n    x" },
        { uri: "file:///w/b.md", path: "b.md", startLine: 1, endLine: 3, symbol: null, score: 0.01, snippet: "# Title" },
      ],
    });
    assert.deepEqual(picks[0], {
      label: "$(symbol-method) Session.refresh",
      description: "a.py:10",
      detail: "def refresh(self):  return 1",
      uri: "file:///w/a.py",
      line: 9,
    });
    assert.equal(picks[1].label, "$(file-code) b.md");
  });

  it("drops malformed answers and entries instead of showing them half", () => {
    assert.deepEqual(searchPicks(null), []);
    assert.deepEqual(searchPicks({ items: "x" }), []);
    assert.deepEqual(searchPicks({ items: [{ path: "a.py" }, { uri: "file:///a", path: "a", startLine: "1" }] }), []);
  });
});
