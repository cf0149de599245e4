"""Chat code actions and the chat panel in a real VS Code: code-server driven by headless Chromium.

The .vsix built by npm runs cube-lsp against an embedded `cube-stack` (proxy with SIMULATED
attestation, auth service) whose runtime is the SCRIPTED BACKEND, so every chat answer is known in
advance. The driver ``e2e/drive_chat.cjs``:

a. Add documentation from the editor's context menu (Cube submenu): a diff of the file against the
   proposed text opens, titled after the action; Accept in its title bar, and the saved file has the
   docstring with the rest unchanged;
b. the same from the lightbulb's quick-fix menu on another function, Reject in the notification that
   comes with the diff: the file is unchanged; once more, with the file changed during the review:
   Accept applies nothing and says why;
c. Explain streams into the chat panel (the first piece is shown while the backend holds the rest),
   the answer is rendered; a follow-up is answered in the same thread, and the backend's second
   request carries the first turn; Apply on the follow-up's code block opens the review diff, and
   Accept changes the document; a follow-up the backend fails says so in the thread.

Screenshots go to ``tests/extension/artifacts/`` (chat-*.png); with CUBE_UPDATE_SCREENSHOTS=1 the
review diff is copied to docs/images/vscode-chat-review.png for the README.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.extension.vscode_harness import (
    ARTIFACTS,
    CUBE_LSP,
    ROOT,
    RUNTIME_DOMAIN,
    Build,
    StackThread,
    answer,
    drive,
    prepare_vscode,
)
from tests.support.scripted_backend import RecordedRequest, Reply, ScriptedBackend

SOURCE = """def add(a, b):
    return a + b


def scale(values, factor):
    return [v * factor for v in values]
"""
ADD_DOCUMENTED = '''def add(a, b):
    """Return the sum of a and b."""
    return a + b
'''
REST = SOURCE.split("\n", 2)[2]  # what follows `add`
DOCUMENTED = ADD_DOCUMENTED + REST
SCALE_DOCUMENTED = '''def scale(values, factor):
    """Multiply every value by factor."""
    return [v * factor for v in values]
'''
EXPLAIN_PIECES = ("`add` returns ", "the sum of `a` and `b`; nothing is checked.")
QUESTION = "How would you write it with sum?"
FAILING_QUESTION = "And in constant time?"
FAILURE = "the scripted model crashed"
FOLLOW_UP = "With the built-in `sum`:\n\n```python\ndef add(a, b):\n    return sum((a, b))\n```\n"
DRIVER_TIMEOUT_S = 90

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _fence(code: str) -> str:
    return f"```python\n{code}```\n"


def _file_when(path: Path, want: str, limit_s: float = 10.0) -> str:
    """The file's text once it contains ``want``, or as it is after ``limit_s``.

    VS Code writes a file a refactoring changed by itself, after the editor already shows the edit and
    marks the tab saved, so the driver has no page event that orders the write before the read: the
    test waits on the file itself.
    """
    deadline = time.monotonic() + limit_s
    text = path.read_text("utf-8")
    while want not in text and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the file for a condition, bounded; not a fixed wait
        text = path.read_text("utf-8")
    return text


class ChatScript:
    """The scripted model: docstrings for Add documentation (add's, then scale's twice), the explanation
    streamed in two pieces with the second held until the test releases it, then the follow-up."""

    def __init__(self) -> None:
        self._documents = [_fence(ADD_DOCUMENTED), _fence(SCALE_DOCUMENTED), _fence(SCALE_DOCUMENTED)]
        self._lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply | None:
        if request.route != "chat":
            return answer(request)
        system = request.json["messages"][0]["content"]
        if system.startswith("You add documentation"):
            with self._lock:
                return Reply.stream(self._documents.pop(0))
        if system.startswith("You explain"):
            return Reply.stream(*EXPLAIN_PIECES, hold_before=(1,))
        if FAILING_QUESTION in request.json["messages"][-1]["content"]:
            return Reply.failure(500, FAILURE)
        if system.startswith("You answer the programmer's question"):
            fence = FOLLOW_UP.index("```")
            return Reply.stream(FOLLOW_UP[:fence], FOLLOW_UP[fence:])
        return Reply.failure(500, f"unscripted chat request: {system[:60]}")


def test_vscode_chat_document_explain_follow_up_and_apply(tmp_path: Path, vscode_build: Build) -> None:
    timings = dict(vscode_build.timings)
    vscode = prepare_vscode(tmp_path, vscode_build, {"cube.server.command": CUBE_LSP}, {"calc.py": SOURCE})
    calc = vscode.workspace / "calc.py"
    saved: dict[str, str] = {}
    backend = ScriptedBackend(domain=RUNTIME_DOMAIN)
    with backend:
        backend.rule = ChatScript()
        stack = StackThread(vscode.stack_options(backend.url))
        stack.start()
        handlers: dict[str, Any] = {
            "saved-apply": lambda _: saved.setdefault("apply", _file_when(calc, '"""Return the sum')),
            "saved-discard": lambda _: saved.setdefault("discard", calc.read_text("utf-8")),
            "saved-stale": lambda _: saved.setdefault("stale", calc.read_text("utf-8")),
            "streaming": lambda _: backend.release(),
            "saved-follow-up": lambda _: saved.setdefault("follow-up", _file_when(calc, "sum((a, b))")),
        }
        try:
            with vscode.serve() as (url, listen_s):
                timings["code-server listening"] = listen_s
                config = {"url": url, "file": "calc.py", "add": [1, 2], "scale": [6, 7], "explain": [1, 3]}
                config |= {"firstPiece": "returns", "question": QUESTION, "failingQuestion": FAILING_QUESTION}
                config |= {"docstring": "Return the sum of a and b.", "applied": "return sum((a, b))"}
                config["failureShot"] = "chat-failure.png"
                events = drive(vscode, "drive_chat.cjs", config, handlers, DRIVER_TIMEOUT_S)
        finally:
            stack.stop()

    timings["driver"] = events["done"]["_at"]
    print("\ntimings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    # Cube: Use Local Stack was the user's choice: the start-up offer of the stack is not on screen.
    assert events["offers-after-command"]["visible"] == 0, events["offers-after-command"]
    assert events["offers-at-review"]["visible"] == 0, events["offers-at-review"]
    # a. Reviewed in a diff titled after the action, whose right side is the proposed text; accepted:
    # the docstring, and nothing else changed.
    review = events["review"]
    assert review["title"] == "Cube: Add documentation — review", review
    assert "Return the sum of a and b." in review["proposed"], review
    assert events["decided-in-title"]["toasts"] == 0, "the review's notification outlived the review"
    assert saved["apply"] == DOCUMENTED
    # b. Rejected: the file is as it was.
    assert "Multiply every value by factor." in events["review-scale"]["proposed"]
    assert saved["discard"] == DOCUMENTED
    # The file changed during a review: Accept applied nothing, and said why.
    assert "the document changed during the review" in events["stale"]["toast"], events["stale"]
    assert saved["stale"] == DOCUMENTED
    # c. Streamed: the first piece was on screen while the backend held the second.
    streaming = events["streaming"]
    assert "returns" in streaming["text"] and "nothing is checked" not in streaming["text"], streaming
    assert streaming["answering"] == 1
    explained = events["explained"]
    assert {"add", "a", "b"} <= set(explained["rendered"]), explained  # `code` rendered as <code>
    assert "nothing is checked" in explained["text"] and "`" not in explained["text"]
    followed = events["followed-up"]
    assert followed["threads"] == 1 and followed["question"] == QUESTION, followed
    assert "sum((a, b))" in followed["answer"]
    chats = [r for r in backend.requests if r.route == "chat"]
    follow_up = next(r for r in chats if QUESTION in r.json["messages"][-1]["content"]).json["messages"]
    assert follow_up[0]["content"].startswith("You answer the programmer's question")
    contents = [m["content"] for m in follow_up]
    assert "".join(EXPLAIN_PIECES) in contents, json.dumps(follow_up)[:2000]  # the first turn's answer
    assert any(m["role"] == "user" and "def add" in m["content"] for m in follow_up[1:-1])  # and its question
    assert QUESTION in contents[-1]
    assert events["review-apply"]["title"] == "Cube: Apply — review", events["review-apply"]
    assert "Applied." in events["applied-note"]["note"]
    # The block replaced the thread's code (how cube-lsp merges it, e.g. keeping the docstring, is its
    # own tests' business); the rest of the file is as it was.
    after = saved["follow-up"]
    assert after.startswith("def add(a, b):\n") and "    return sum((a, b))\n" in after, after
    assert "return a + b" not in after and after.endswith(REST), after
    failed = events["follow-up-failed"]
    assert failed["note"].startswith("The question failed: ") and FAILURE in failed["note"], failed
    assert failed["inputEnabled"], failed
    if os.environ.get("CUBE_UPDATE_SCREENSHOTS") == "1":  # the README's picture, refreshed on request only
        docs = ROOT / "docs" / "images"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACTS / "chat-review-diff.png", docs / "vscode-chat-review.png")
