"""The built-in model runtime as a service of its own: ``cube-stack runtime serve``.

Also ``python -m cube_stack.runtime``.

In a deployment the runtime runs next to the proxy inside the CVM, as its own process (and systemd
unit), listening on a Unix socket only the proxy's user can open (or on a loopback port). Every flag
has a ``CUBE_RUNTIME_*`` variable (the flag wins), so a unit's environment file can hold them all:

=========================  ==============================  ================================================
flag                       variable                        meaning
=========================  ==============================  ================================================
``--model NAME=GGUF``      ``CUBE_RUNTIME_MODELS``         GGUF files to serve (variable: ``NAME=PATH``
                                                           pairs separated by ``,``); none: ``--demo``
``--demo DIR``             ``CUBE_RUNTIME_DEMO_DIR``       serve the generated RANDOM-WEIGHTS demo model,
                                                           written into DIR (proves the path, not quality)
``--embedder NAME=PATH``   ``CUBE_RUNTIME_EMBEDDERS``      embedding models: a ``.gguf`` file (llama.cpp,
                                                           no torch) or a sentence-transformers directory
``--no-minilm``            ``CUBE_RUNTIME_MINILM=0``       do not serve the packaged all-MiniLM-L6-v2
``--socket PATH``          ``CUBE_RUNTIME_SOCKET``         listen on this Unix socket (0600, directory 0700)
``--listen HOST:PORT``     ``CUBE_RUNTIME_LISTEN``         listen on TCP instead (loopback by default)
``--threads N``            ``CUBE_RUNTIME_THREADS``        llama.cpp threads (default: the core count)
``--embed-threads N``      ``CUBE_RUNTIME_EMBED_THREADS``  threads for embeddings (torch or llama.cpp)
``--n-ctx N``              ``CUBE_RUNTIME_N_CTX``          context window per GGUF model (default 4096)
``--model-hashes FILE``    ``CUBE_RUNTIME_MODEL_HASHES``   serve only GGUF files (models and embedders)
                                                           whose SHA-256 is listed (``sha256sum`` format);
                                                           others, and embedder directories, are refused
``--model-archive TAR``    ``CUBE_RUNTIME_MODEL_ARCHIVE``  also serve the tar's ``NAME.gguf`` (model) and
                                                           ``NAME.embedding.gguf`` (embedder) members, read
                                                           into memory once (the CVM's config disk); needs
                                                           ``--model-hashes``
=========================  ==============================  ================================================

It loads every model before it listens, prints ``runtime ready: <URL>`` (``unix:/path`` or
``http://host:port``, what the proxy's ``CUBE_PROXY_OLLAMA_URL`` takes) on stderr, and stops cleanly on
SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from cube_stack.log_level import configure_logging
from cube_stack.runtime.builtin import BuiltinRuntime, BuiltinSettings
from cube_stack.runtime.demo_model import DEMO_MODEL_FILE, DEMO_MODEL_NAME, write_demo_model
from cube_stack.runtime.model_archive import read_archive
from cube_stack.runtime.model_files import load_model_hashes
from cube_wire.errors import CubeError

__all__ = ["add_runtime_arguments", "main", "settings_from"]

log = logging.getLogger(__name__)


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the runtime's flags (each falls back to its ``CUBE_RUNTIME_*`` variable)."""
    parser.add_argument("--model", action="append", default=[], metavar="NAME=GGUF", help="a GGUF model")
    parser.add_argument("--demo", metavar="DIR", type=Path, help="serve the RANDOM-WEIGHTS demo model")
    parser.add_argument(
        "--embedder",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="an embedding model: a .gguf file (llama.cpp) or a sentence-transformers directory",
    )
    parser.add_argument("--no-minilm", action="store_true", help="do not serve all-MiniLM-L6-v2")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--socket", type=Path, help="Unix socket to listen on")
    where.add_argument("--listen", metavar="HOST:PORT", help="TCP address to listen on")
    parser.add_argument("--threads", type=int, help="llama.cpp threads")
    parser.add_argument("--embed-threads", type=int, help="threads for embeddings (torch or llama.cpp)")
    parser.add_argument("--n-ctx", type=int, help="context window per GGUF model, in tokens")
    parser.add_argument(
        "--model-hashes",
        type=Path,
        help="serve only GGUF files (models and embedders) whose SHA-256 this sha256sum-style list holds",
    )
    parser.add_argument(
        "--model-archive",
        type=Path,
        help="also serve the NAME.gguf / NAME.embedding.gguf members of this tar (needs --model-hashes)",
    )


def _pairs(values: Sequence[str], what: str) -> dict[str, Path]:
    pairs: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise CubeError(f"{what}: found {value!r}, wanted NAME=PATH", code="runtime.settings_invalid")
        pairs[name.strip()] = Path(path.strip())
    return pairs


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CubeError(f"--listen: found {value!r}, wanted HOST:PORT", code="runtime.settings_invalid")
    return host.strip("[]") or "127.0.0.1", int(port)


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> BuiltinSettings:
    """Return the runtime's settings from flags, then ``CUBE_RUNTIME_*`` variables; raise CubeError."""

    def env(name: str) -> str:
        return environ.get(f"CUBE_RUNTIME_{name}", "").strip()

    def number(flag: int | None, name: str) -> int | None:
        if flag is not None:
            return flag
        text = env(name)
        if not text:
            return None
        if not text.isdigit():
            raise CubeError(
                f"CUBE_RUNTIME_{name}: found {text!r}, wanted a number", code="runtime.settings_invalid"
            )
        return int(text)

    models = _pairs(args.model or [v for v in env("MODELS").split(",") if v.strip()], "--model")
    embedders = _pairs(args.embedder or [v for v in env("EMBEDDERS").split(",") if v.strip()], "--embedder")
    demo = args.demo or (Path(env("DEMO_DIR")) if env("DEMO_DIR") else None)
    archive_path = args.model_archive or (Path(env("MODEL_ARCHIVE")) if env("MODEL_ARCHIVE") else None)
    archive = read_archive(archive_path) if archive_path is not None else None
    if not models and archive is None:
        if demo is None:
            raise CubeError(
                "no model: give --model NAME=GGUF (or CUBE_RUNTIME_MODELS), or --demo DIR for the "
                "RANDOM-WEIGHTS demo model",
                code="runtime.settings_invalid",
            )
        path = demo / DEMO_MODEL_FILE
        if not path.is_file():
            write_demo_model(path)
        log.warning(
            "runtime.demo serving the RANDOM-WEIGHTS demo model %s: it proves the path, not quality", path
        )
        models = {DEMO_MODEL_NAME: path}
    socket = args.socket or (Path(env("SOCKET")) if env("SOCKET") else None)
    listen = args.listen or env("LISTEN")
    host, port = _listen(listen) if listen and socket is None else ("127.0.0.1", 0)
    minilm = not args.no_minilm and env("MINILM").lower() not in ("0", "false", "no", "off")
    settings = {
        "models": models,
        "embedders": embedders,
        "minilm": minilm,
        "socket_path": socket,
        "host": host,
        "port": port,
        "n_threads": number(args.threads, "THREADS"),
        "embed_threads": number(args.embed_threads, "EMBED_THREADS"),
        "archive": archive,
    }
    hashes = args.model_hashes or (Path(env("MODEL_HASHES")) if env("MODEL_HASHES") else None)
    if hashes is not None:
        settings["model_hashes"] = load_model_hashes(hashes)
    n_ctx = number(args.n_ctx, "N_CTX")
    if n_ctx is not None:
        settings["n_ctx"] = n_ctx
    return BuiltinSettings(**settings)  # type: ignore[arg-type]


async def serve(settings: BuiltinSettings) -> None:
    """Load the models, listen, say where, and serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runtime = BuiltinRuntime(settings)
    await runtime.start()
    try:
        print(f"runtime ready: {runtime.base_url}", file=sys.stderr, flush=True)
        await stop.wait()
        log.info("runtime.stopping")
    finally:
        await runtime.stop()


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the runtime until SIGTERM/SIGINT; return the process exit status."""
    parser = argparse.ArgumentParser(
        prog="cube-stack runtime serve", description="the built-in model runtime"
    )
    add_runtime_arguments(parser)
    return run(parser.parse_args(argv), environ)


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Run the runtime for parsed arguments (``cube-stack runtime serve`` shares this)."""
    env = os.environ if environ is None else environ
    try:
        configure_logging(env)
        settings = settings_from(args, env)
    except CubeError as exc:
        print(f"cube runtime: {exc.message}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings))
    except CubeError as exc:
        print(f"cube runtime: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    return 0
