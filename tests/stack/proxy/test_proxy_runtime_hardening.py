"""The proxy and a runtime on a Unix socket (issue 8, finding 5), on real servers.

* The proxy reaches a runtime on a Unix socket (``unix:/path``), as ``cube-stack up`` wires it: here a
  real built-in runtime (llama.cpp on the generated demo GGUF) behind a real proxy (uvicorn, port 0).
* Lone UTF-16 surrogates (finding 6): the proxy streams bodies without parsing them, so the runtime's
  400 (``runtime.unpaired_surrogate``) reaches the client as it was, over the socket.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cube_proxy_testkit import AuthStack, MakeProxy, bearer

from cube_stack.proxy import ProxySettings
from cube_stack.proxy.errors import ProxySettingsError
from cube_stack.runtime import DEMO_MODEL_NAME, BuiltinRuntime, BuiltinSettings, write_demo_model
from cube_stack.unix_socket import MAX_PATH_BYTES

LONE = "\ud800"


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_model(tmp_path_factory.mktemp("proxy-models") / "cube-demo.gguf", seed=0)


@pytest.fixture
async def socket_runtime(demo_model: Path, tmp_path: Path) -> AsyncIterator[BuiltinRuntime]:
    settings = BuiltinSettings(
        models={DEMO_MODEL_NAME: demo_model}, socket_path=tmp_path / "runtime" / "runtime.sock", n_threads=1
    )
    runtime = BuiltinRuntime(settings)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.mark.parametrize(
    "url", ["unix:/run/cube/runtime.sock", "unix:/" + "a" * (MAX_PATH_BYTES - 1), "http://10.0.0.5:8000/v1"]
)
def test_a_runtime_url_may_name_a_unix_socket(url: str) -> None:
    assert ProxySettings(ollama_url=url, openai_url=url).effective_openai_url == url


@pytest.mark.parametrize(
    "url",
    [
        "unix:relative/runtime.sock",
        "unix://host/runtime.sock",  # one syntax only: no host part
        "unix:/run/cube/runtime.sock?x=1",
        "unix:/run/cube/",
        "unix:/" + "a" * MAX_PATH_BYTES,  # one byte over what a socket address holds
        "unix:",
    ],
)
def test_a_malformed_unix_runtime_url_is_refused_naming_the_setting(url: str) -> None:
    for name in ("ollama_url", "openai_url"):
        with pytest.raises(ProxySettingsError) as raised:
            ProxySettings(**{name: url})
        assert raised.value.code == "cube_proxy.settings_invalid" and raised.value.field == name


async def test_the_proxy_generates_through_a_runtime_on_a_unix_socket(
    make_proxy: MakeProxy, stack: AuthStack, socket_runtime: BuiltinRuntime
) -> None:
    assert socket_runtime.base_url.startswith("unix:/")
    async with make_proxy(ollama_url=socket_runtime.base_url, runtime_api_key=None) as proxy:
        headers = bearer(stack.bob.access_token)
        tags = await proxy.client.get(f"/{stack.domain}/api/tags", headers=headers)
        assert tags.status_code == 200 and tags.json()["models"][0]["name"] == DEMO_MODEL_NAME
        body = {"model": DEMO_MODEL_NAME, "prompt": "x", "options": {"num_predict": 3, "seed": 1}}
        streamed = await proxy.client.post(f"/{stack.domain}/api/generate", json=body, headers=headers)
        assert streamed.status_code == 200
        lines = [json.loads(line) for line in streamed.text.splitlines() if line]
        assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 3
        completion = {"model": DEMO_MODEL_NAME, "prompt": "x", "max_tokens": 2}
        answered = await proxy.client.post(
            f"/{stack.domain}/v1/completions", json=completion, headers=headers
        )
        assert answered.status_code == 200 and answered.json()["usage"]["completion_tokens"] == 2


async def test_a_runtime_socket_that_is_gone_is_a_502(
    make_proxy: MakeProxy, stack: AuthStack, socket_runtime: BuiltinRuntime
) -> None:
    url = socket_runtime.base_url
    await socket_runtime.stop()  # removes the socket file
    async with make_proxy(ollama_url=url, runtime_api_key=None, connect_timeout=2) as proxy:
        response = await proxy.client.get(f"/{stack.domain}/api/tags", headers=bearer(stack.bob.access_token))
    assert response.status_code == 502 and response.json()["code"] == "cube_proxy.runtime_unavailable"


RELAYED = [
    ("/api/generate", {"model": DEMO_MODEL_NAME, "prompt": "x" + LONE, "stream": False}),
    ("/api/chat", {"model": DEMO_MODEL_NAME, "messages": [{"role": "user", "content": LONE}]}),
    ("/v1/completions", {"model": DEMO_MODEL_NAME, "prompt": LONE, "max_tokens": 2}),
    ("/v1/chat/completions", {"model": DEMO_MODEL_NAME, "messages": [{"role": "user", "content": LONE}]}),
]


@pytest.mark.parametrize(("suffix", "document"), RELAYED)
async def test_the_runtimes_400_for_a_lone_surrogate_reaches_the_client(
    make_proxy: MakeProxy, stack: AuthStack, socket_runtime: BuiltinRuntime, suffix: str, document: Any
) -> None:
    raw = json.dumps(document).encode("ascii")  # the surrogate goes as the escape "\ud800"
    assert b"\\ud800" in raw
    headers = {**bearer(stack.bob.access_token), "content-type": "application/json"}
    async with make_proxy(ollama_url=socket_runtime.base_url, runtime_api_key=None) as proxy:
        response = await proxy.client.post(f"/{stack.domain}{suffix}", content=raw, headers=headers)
    assert response.status_code == 400, response.text
    body = response.json()
    code = body["error"]["code"] if suffix.startswith("/v1/") else body["code"]
    assert code == "runtime.unpaired_surrogate"
