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


# Lists the code actions for lines 1-2, runs "Cube: Add documentation" (resolving it first if it came
# without a command), waits for the edit the server asks Neovim to apply, writes the buffer, quits.
CODE_ACTION = """
local out = os.getenv('CUBE_TEST_OUT')
local function finish(result)
  vim.fn.writefile({ vim.fn.json_encode(result) }, out)
  vim.cmd('qall!')
end
local bufnr = vim.api.nvim_get_current_buf()
if not vim.wait(20000, function() return vim.g.cube_status ~= nil end, 20) then
  finish({ error = 'no cube/status within 20 s' })
  return
end
local params = vim.lsp.util.make_given_range_params({ 1, 0 }, { 2, 0 })
params.context = { diagnostics = {} }
local responses, err = vim.lsp.buf_request_sync(bufnr, 'textDocument/codeAction', params, 20000)
local titles, chosen = {}, nil
for _, response in pairs(responses or {}) do
  for _, action in ipairs(response.result or {}) do
    table.insert(titles, action.title)
    if action.title == 'Cube: Add documentation' then chosen = action end
  end
end
if chosen == nil then
  finish({ titles = titles, error = err or 'no Add documentation action' })
  return
end
if chosen.command == nil then
  local resolved = vim.lsp.buf_request_sync(bufnr, 'codeAction/resolve', chosen, 20000)
  for _, response in pairs(resolved or {}) do chosen = response.result or chosen end
end
local before = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
local ran = vim.lsp.buf_request_sync(bufnr, 'workspace/executeCommand', chosen.command, 30000)
local outcome = vim.NIL
for _, response in pairs(ran or {}) do outcome = response.result or response.err or vim.NIL end
finish({ titles = titles, outcome = outcome, before = before,
         after = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false) })
"""


def test_neovim_lists_code_actions_and_runs_one(
    scripted_backend: ScriptedBackend, editor_env: dict[str, str], calc_py: Path, tmp_path: Path
):
    nvim = editor("nvim")
    config = tmp_path / "cube.lua"
    config.write_text(snippet("neovim"))
    drive = tmp_path / "drive.lua"
    drive.write_text(CODE_ACTION)
    out = tmp_path / "out.json"
    settings = tmp_path / "chat-settings.json"
    settings.write_text(json.dumps(scripted_backend.settings_json(models={"completion": "m", "chat": "c"})))
    documented = 'def add(a, b):\n    """Add two numbers."""\n    return a + b\n'
    scripted_backend.script(Reply.stream(f"```python\n{documented}```"))
    calc_py.write_text("def add(a, b):\n    return a + b\n")
    command = [nvim, "--headless", "--clean", "-i", "NONE", "-u", str(config), str(calc_py)]
    done = subprocess.run(
        [*command, "-c", f"luafile {drive}"],
        env=editor_env | {"CUBE_TEST_OUT": str(out), "CUBE_SETTINGS": str(settings)},
        cwd=calc_py.parent,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=EDITOR_TIMEOUT_S,
    )
    assert out.exists(), f"nvim wrote nothing (exit {done.returncode}): {done.stdout}{done.stderr}"
    result = json.loads(out.read_text())
    assert "Cube: Explain" in result["titles"] and "Cube: Add documentation" in result["titles"], result
    assert result["outcome"]["applied"] is True, result
    assert result["after"] == ["def add(a, b):", '    """Add two numbers."""', "    return a + b"], result
