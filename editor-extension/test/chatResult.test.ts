import { strict as assert } from "node:assert";
import { chatResultMarkdown, isChatResult } from "../src/chatResult";

describe("chat results", () => {
  const result = { chatId: "c1", action: "explain", uri: "file:///w/pkg/geometry.py", title: "Cube: Explain", markdown: "  `area` returns the area.\n" };

  it("renders title, file and the answer", () => {
    assert.equal(chatResultMarkdown(result), "# Cube: Explain\n\n_geometry.py_\n\n`area` returns the area.\n");
  });

  it("ignores malformed results", () => {
    assert.equal(isChatResult(result), true);
    assert.equal(isChatResult({ ...result, markdown: 3 }), false);
    assert.equal(isChatResult(null), false);
  });
});
