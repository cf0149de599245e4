"""The root of every error cube-lsp raises on purpose.

Each error carries a stable ``code`` (tests and callers branch on it, never on the text) and a
user-facing ``message`` that names the field, the value found and the value wanted::

    CubeError
    ├── SettingsError            settings.*         (settings.py)
    ├── cube.errors.ProxyError   proxy.*            (the HTTP client, cube/errors.py)
    └── completion errors        completion.*       (engine faults that reach the editor)
"""

from __future__ import annotations


class CubeError(Exception):
    """An expected failure with a stable code and a message fit to show a programmer."""

    code: str = "cube.error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class SettingsError(CubeError):
    """A setting has the wrong type or value; ``field`` is its dotted camelCase name."""

    code = "settings.invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"cube setting '{field}': {message}")
        self.field = field
