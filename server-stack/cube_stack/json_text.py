r"""Text checks on decoded JSON that every service of the stack needs before it trusts a body.

Python's JSON decoder turns an escape such as ``"\ud800"`` into a lone UTF-16 surrogate: a ``str`` that
holds no Unicode character and fails the first time it is encoded as UTF-8 -- in a tokenizer, a
password hasher, a database driver or a log line, far from the parser, as a 500. A service calls
:func:`unpaired_surrogate_path` once, right after decoding, and refuses the body with its own 400.
Pure: no I/O, no service's error classes.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["unpaired_surrogate_path"]

# json.loads joins a valid high+low escape pair into one character, so any surrogate left is a lone one.
_SURROGATE = re.compile("[\ud800-\udfff]")


def unpaired_surrogate_path(document: Any) -> str | None:
    """Return where the first lone surrogate is (``messages[1].content``, ``(body)``), or None.

    Keys are checked too; a key that holds one is named with U+FFFD in its place, so the path itself can
    go into a UTF-8 error message.
    """
    pending: list[tuple[str, Any]] = [("", document)]
    while pending:  # a loop, not recursion: the depth is the client's to choose
        where, value = pending.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return where or "(body)"
        elif isinstance(value, dict):
            children = []
            for key, item in value.items():
                name = f"{where}.{key}" if where else str(key)
                if _SURROGATE.search(name):
                    return _SURROGATE.sub("\N{REPLACEMENT CHARACTER}", name)
                children.append((name, item))
            pending.extend(reversed(children))  # reversed: pop() then visits them in document order
        elif isinstance(value, list):
            pending.extend(reversed([(f"{where}[{index}]", item) for index, item in enumerate(value)]))
    return None
