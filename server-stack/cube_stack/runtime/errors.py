"""The model runtimes' error hierarchy: one stable ``code`` and one HTTP status per class.

The built-in runtime's routes never build error bodies themselves; they raise one of these and the app
maps it to Ollama's ``{"error": message}`` (plus our stable ``code``) or, on ``/v1/*``, to OpenAI's
``{"error": {"message", "type", "code"}}``::

    CubeError (cube_wire.errors)
    └── ModelRuntimeError            runtime.error                 500
        ├── BadRequestError          runtime.bad_request           400
        │   └── UnpairedSurrogateError  runtime.unpaired_surrogate  400
        ├── CapabilityError          runtime.capability_missing    400
        ├── PromptTooLongError       runtime.prompt_too_long       400
        ├── ModelNotFoundError       runtime.model_not_found       404
        ├── PayloadTooLargeError     runtime.body_too_large        413
        ├── ModelLoadError           runtime.model_load_failed     (raised at start)
        ├── RuntimeSettingsError     runtime.settings_invalid      (raised at start)
        │   └── SocketPathTooLongError  runtime.socket_path_too_long  (raised at start)
        ├── SocketInUseError         runtime.socket_in_use         (raised at start)
        └── RuntimeUnavailableError  runtime.unavailable           503

Codes are stable and tests assert them, never the message text.
"""

from __future__ import annotations

from cube_wire.errors import CubeError


class ModelRuntimeError(CubeError):
    """An expected runtime failure with an HTTP status and a stable code."""

    code = "runtime.error"
    status = 500


class BadRequestError(ModelRuntimeError):
    """The request body is malformed: bad JSON, a missing field, a value of the wrong type (400)."""

    code = "runtime.bad_request"
    status = 400


class UnpairedSurrogateError(BadRequestError):
    r"""A JSON string holds a lone UTF-16 surrogate (``"\ud800"``), which is no character at all (400)."""

    code = "runtime.unpaired_surrogate"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field  # where it is: "prompt", "messages[1].content", or the path of a bad field name


class CapabilityError(ModelRuntimeError):
    """The model cannot do what was asked: ``suffix`` without FIM tokens, chat on an embedder (400)."""

    code = "runtime.capability_missing"
    status = 400


class PromptTooLongError(ModelRuntimeError):
    """The prompt does not fit in the model's context window (400)."""

    code = "runtime.prompt_too_long"
    status = 400


class ModelNotFoundError(ModelRuntimeError):
    """No model of that name is configured (404)."""

    code = "runtime.model_not_found"
    status = 404


class PayloadTooLargeError(ModelRuntimeError):
    """The request body is larger than the runtime accepts (413)."""

    code = "runtime.body_too_large"
    status = 413


class ModelLoadError(ModelRuntimeError):
    """A configured model file is missing or llama.cpp / the embedder refused to load it."""

    code = "runtime.model_load_failed"


class RuntimeSettingsError(ModelRuntimeError):
    """A runtime setting has the wrong type or value; ``field`` names it (raised at start-up)."""

    code = "runtime.settings_invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"runtime setting '{field}': {message}")
        self.field = field


class SocketPathTooLongError(RuntimeSettingsError):
    """The Unix socket path is longer than the 107 bytes a socket address holds (raised at start-up)."""

    code = "runtime.socket_path_too_long"

    def __init__(self, message: str) -> None:
        super().__init__("socket_path", message)


class SocketInUseError(ModelRuntimeError):
    """Another server already answers on the runtime's Unix socket (raised at start-up)."""

    code = "runtime.socket_in_use"


class RuntimeUnavailableError(ModelRuntimeError):
    """The runtime is not running or did not answer in time (503)."""

    code = "runtime.unavailable"
    status = 503
