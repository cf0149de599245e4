import * as assert from "node:assert/strict";
import { CHAT_ANNOTATION, applyEdits, chatEdit, reviewTitle, withoutAnnotation } from "../src/chatReview";

const range = (l1: number, c1: number, l2: number, c2: number) => ({ start: { line: l1, character: c1 }, end: { line: l2, character: c2 } });

/** What cube-lsp sends for a chat edit that needs confirmation (cube_lsp/chat/lsp_convert.py). */
function cubeParams(edits = [{ range: range(1, 0, 1, 0), newText: '    """Doc."""\n', annotationId: CHAT_ANNOTATION }], version: number | null = 3) {
  return {
    label: "Cube: Add documentation",
    edit: {
      documentChanges: [{ textDocument: { uri: "file:///w/calc.py", version }, edits }],
      changeAnnotations: { [CHAT_ANNOTATION]: { label: "Cube: Add documentation", needsConfirmation: true, description: "review it" } },
    },
  };
}

describe("chat edit review", () => {
  it("recognises cube-lsp's annotated chat edit", () => {
    const edit = chatEdit(cubeParams());
    assert.ok(edit);
    assert.equal(edit.uri, "file:///w/calc.py");
    assert.equal(edit.version, 3);
    assert.equal(edit.label, "Cube: Add documentation");
    assert.equal(edit.edits.length, 1);
    assert.equal(chatEdit(cubeParams(undefined, null))?.version, null);
  });

  it("leaves every other edit to VS Code", () => {
    const plain = { edit: { documentChanges: [{ textDocument: { uri: "file:///a", version: 1 }, edits: [{ range: range(0, 0, 0, 0), newText: "x" }] }] } };
    assert.equal(chatEdit(plain), undefined);
    assert.equal(chatEdit({ edit: { changes: { "file:///a": [{ range: range(0, 0, 0, 0), newText: "x" }] } } }), undefined);
    // One edit not annotated, two documents, a file operation, no edits.
    assert.equal(chatEdit(cubeParams([{ range: range(0, 0, 0, 0), newText: "x", annotationId: "other" }])), undefined);
    const two = cubeParams();
    two.edit.documentChanges.push({ ...two.edit.documentChanges[0], textDocument: { uri: "file:///w/b.py", version: 1 } });
    assert.equal(chatEdit(two), undefined);
    const rename = { ...cubeParams(), edit: { ...cubeParams().edit, documentChanges: [{ kind: "rename", oldUri: "file:///a", newUri: "file:///b" }] } };
    assert.equal(chatEdit(rename), undefined);
    assert.equal(chatEdit(cubeParams([])), undefined);
  });

  it("drops the annotation for the edit applied after Accept, and keeps the version", () => {
    const plain = withoutAnnotation(cubeParams());
    assert.equal(plain.edit.changeAnnotations, undefined);
    assert.deepEqual(plain.edit.documentChanges, [
      { textDocument: { uri: "file:///w/calc.py", version: 3 }, edits: [{ range: range(1, 0, 1, 0), newText: '    """Doc."""\n' }] },
    ]);
    assert.equal(plain.label, "Cube: Add documentation");
    assert.equal(chatEdit(plain), undefined);
  });

  it("computes the proposed text", () => {
    const source = "def add(a, b):\n    return a + b\n";
    assert.equal(applyEdits(source, cubeParams().edit.documentChanges[0].edits), 'def add(a, b):\n    """Doc."""\n    return a + b\n');
    // Replace a whole line; several edits, given in any order, all against the original text.
    assert.equal(applyEdits("a\nb\nc\n", [{ range: range(2, 0, 2, 1), newText: "C" }, { range: range(0, 0, 1, 1), newText: "A\nB" }]), "A\nB\nC\n");
    // Insertion at the end, a position past a line's end (clamped to it), a line past the end.
    assert.equal(applyEdits("x\n", [{ range: range(5, 0, 5, 0), newText: "y\n" }]), "x\ny\n");
    assert.equal(applyEdits("ab\ncd", [{ range: range(0, 9, 1, 0), newText: "-" }]), "ab-cd");
    // \r\n and \r line ends; UTF-16 characters (an emoji is two).
    assert.equal(applyEdits("a\r\nb\rc", [{ range: range(1, 0, 2, 1), newText: "Z" }]), "a\r\nZ");
    assert.equal(applyEdits("😀x\n", [{ range: range(0, 2, 0, 3), newText: "y" }]), "😀y\n");
    assert.throws(() => applyEdits("abc", [{ range: range(0, 0, 0, 2), newText: "" }, { range: range(0, 1, 0, 3), newText: "" }]));
  });

  it("titles the diff after the action", () => {
    assert.equal(reviewTitle("Cube: Add documentation"), "Cube: Add documentation — review");
    assert.equal(reviewTitle("Refactor"), "Cube: Refactor — review");
  });
});
