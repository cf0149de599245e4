"""Model runtimes: how the stack reaches Ollama, an OpenAI-compatible server, or our built-in llama.cpp.

The public surface: the :class:`Runtime` interface (a base URL speaking the Ollama and/or OpenAI API,
a health probe, start/stop) with :class:`OllamaRuntime`, :class:`OpenAICompatibleRuntime` and
:class:`BuiltinRuntime` (+ :class:`BuiltinSettings`, :func:`embedded_default_settings`); the
RANDOM-WEIGHTS demo model (:func:`write_demo_model`, :data:`DEMO_MODEL_NAME`); the packaged MiniLM
embedder's name (:data:`MINILM_NAME`); :func:`create_runtime_app` for hosting the app elsewhere; and
the error hierarchy. Heavy libraries (llama-cpp-python, sentence-transformers, torch) are imported
only when a model is loaded.
"""

from cube_stack.runtime.app import create_runtime_app
from cube_stack.runtime.base import Api, Runtime, RuntimeInfo
from cube_stack.runtime.builtin import (
    BuiltinRuntime,
    BuiltinSettings,
    default_socket_path,
    embedded_default_settings,
)
from cube_stack.runtime.demo_model import DEMO_MODEL_NAME, write_demo_model
from cube_stack.runtime.embeddings import MINILM_NAME
from cube_stack.runtime.errors import (
    BadRequestError,
    CapabilityError,
    ModelLoadError,
    ModelNotFoundError,
    ModelRuntimeError,
    PayloadTooLargeError,
    PromptTooLongError,
    RuntimeSettingsError,
    RuntimeUnavailableError,
    SocketInUseError,
    SocketPathTooLongError,
    UnpairedSurrogateError,
)
from cube_stack.runtime.llama import GenerationReport
from cube_stack.runtime.registry import ModelRegistry
from cube_stack.runtime.remote import DEFAULT_OLLAMA_URL, OllamaRuntime, OpenAICompatibleRuntime

__all__ = [
    "DEFAULT_OLLAMA_URL",
    "DEMO_MODEL_NAME",
    "MINILM_NAME",
    "Api",
    "BadRequestError",
    "BuiltinRuntime",
    "BuiltinSettings",
    "CapabilityError",
    "GenerationReport",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelRegistry",
    "ModelRuntimeError",
    "OllamaRuntime",
    "OpenAICompatibleRuntime",
    "PayloadTooLargeError",
    "PromptTooLongError",
    "Runtime",
    "RuntimeInfo",
    "RuntimeSettingsError",
    "RuntimeUnavailableError",
    "SocketInUseError",
    "SocketPathTooLongError",
    "UnpairedSurrogateError",
    "create_runtime_app",
    "default_socket_path",
    "embedded_default_settings",
    "write_demo_model",
]
