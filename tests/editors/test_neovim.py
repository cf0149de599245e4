"""Neovim (`nvim --headless`) with the Lua set-up from docs/editors.md gets a completion from cube-lsp.

Debian's Neovim 0.7 has no inline completion, so this goes through cube-lsp's `textDocument/completion`
fallback, against the SCRIPTED BACKEND (attestation off on loopback). The waiting happens inside
Neovim (`vim.wait` with a bound); the test reads what Neovim wrote when it quit.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.editors.conftest import EDITOR_TIMEOUT_S, editor, snippet
from tests.support.scripted_backend import Reply, ScriptedBackend

pytestmark = pytest.mark.e2e

# Runs after the set-up and the file are loaded: wait for cube/status, ask for a completion at the end of
# line 2, write what came back as JSON, quit.
DRIVE = """
local out = os.getenv('CUBE_TEST_OUT')
local function finish(result)
  vim.fn.writefile({ vim.fn.json_encode(result) }, out)
  vim.cmd('qall!')
end
local bufnr = vim.api.nvim_get_current_buf()
if not vim.wait(20000, function() return vim.g.cube_status ~= nil end, 20) then
  finish({ error = 'no cube/status within 20 s', filetype = vim.bo.filetype })
  return
end
local params = {
  textDocument = vim.lsp.util.make_text_document_params(),
  position = { line = 1, character = #'    return ' },
}
local responses, err = vim.lsp.buf_request_sync(bufnr, 'textDocument/completion', params, 20000)
local items = {}
for _, response in pairs(responses or {}) do
  local result = response.result or {}
  for _, item in ipairs(result.items or result) do
    table.insert(items, { label = item.label, insertText = item.insertText or vim.NIL,
                          newText = item.textEdit and item.textEdit.newText or vim.NIL })
  end
end
finish({ status = vim.g.cube_status, omnifunc = vim.bo.omnifunc, items = items, error = err or vim.NIL })
"""


def test_neovim_gets_a_completion_through_the_fallback(
    scripted_backend: ScriptedBackend, editor_env: dict[str, str], calc_py: Path, tmp_path: Path
):
    nvim = editor("nvim")
    config = tmp_path / "cube.lua"
    config.write_text(snippet("neovim"))
    drive = tmp_path / "drive.lua"
    drive.write_text(DRIVE)
    out = tmp_path / "out.json"
    scripted_backend.script(Reply.stream("a ", "+ b"))
    command = [nvim, "--headless", "--clean", "-i", "NONE", "-u", str(config), str(calc_py)]
    done = subprocess.run(
        [*command, "-c", f"luafile {drive}"],
        env=editor_env | {"CUBE_TEST_OUT": str(out)},
        cwd=calc_py.parent,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=EDITOR_TIMEOUT_S,
    )
    assert out.exists(), f"nvim wrote nothing (exit {done.returncode}): {done.stdout}{done.stderr}"
    result = json.loads(out.read_text())
    assert "error" not in result or result["error"] is None, result
    assert result["status"] == "cube: ready", result
    assert result["omnifunc"] == "v:lua.vim.lsp.omnifunc"
    texts = [item["newText"] or item["insertText"] or item["label"] for item in result["items"]]
    assert "a + b" in texts, result
    request = scripted_backend.requests[-1]
    assert request.json["prompt"].endswith("def add(a, b):\n    return ")
