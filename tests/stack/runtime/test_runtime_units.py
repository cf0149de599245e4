"""Pure pieces of the runtime: names, stop sequences, FIM assembly, chat templates, request parsing."""

from __future__ import annotations

from typing import Any

import pytest

import cube_stack.runtime as runtime_package
from cube_stack.runtime import BuiltinSettings, RuntimeSettingsError
from cube_stack.runtime.errors import BadRequestError, ModelRuntimeError
from cube_stack.runtime.names import normalize_model_name
from cube_stack.runtime.prompts import (
    ChatMessage,
    ChatPrompt,
    ChatTemplate,
    FimPrompt,
    FimTokens,
    TextPrompt,
    assemble_fim_tokens,
    render_fallback_chat,
)
from cube_stack.runtime.requests import (
    MAX_EMBED_INPUTS,
    parse_ollama_chat,
    parse_ollama_embed,
    parse_ollama_generate,
    parse_openai_chat,
    parse_openai_completion,
    parse_openai_embeddings,
)
from cube_stack.runtime.stops import StopMatcher


def test_public_surface() -> None:
    assert sorted(runtime_package.__all__) == [
        "Api",
        "BadRequestError",
        "BuiltinRuntime",
        "BuiltinSettings",
        "CapabilityError",
        "DEFAULT_OLLAMA_URL",
        "DEMO_MODEL_NAME",
        "GenerationReport",
        "MINILM_NAME",
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


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("cube-demo", "cube-demo:latest"),
        ("Cube-Demo:Random", "cube-demo:random"),
        (" qwen2.5-coder:1.5b ", "qwen2.5-coder:1.5b"),
        ("library/all-minilm:l6-v2", "library/all-minilm:l6-v2"),
        ("registry.example/ns/model", "registry.example/ns/model:latest"),
    ],
)
def test_model_names_gain_latest_and_lose_case(raw: str, normalized: str) -> None:
    assert normalize_model_name(raw) == normalized


@pytest.mark.parametrize("raw", ["", ":tag", "a:b:c", "bad name", "-x", "x" * 300])
def test_malformed_model_names_are_bad_requests(raw: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        normalize_model_name(raw)
    assert caught.value.code == "runtime.bad_request"


def _run_stops(stops: list[str], pieces: list[str]) -> tuple[list[str], bool]:
    matcher = StopMatcher(stops)
    out = [matcher.feed(piece) for piece in pieces]
    if not matcher.stopped:
        out.append(matcher.flush())
    return out, matcher.stopped


def test_stop_inside_one_piece_cuts_before_it() -> None:
    out, stopped = _run_stops(["\n\n"], ["def f():", " return 1\n\nx"])
    assert "".join(out) == "def f(): return 1" and stopped


def test_stop_across_pieces_is_never_leaked() -> None:
    out, stopped = _run_stops(["END"], ["ab", "cE", "N", "D tail"])
    assert out == ["ab", "c", "", ""] and stopped


def test_partial_stop_prefix_is_released_when_it_does_not_complete() -> None:
    out, stopped = _run_stops(["END"], ["xE", "Nope"])
    assert out == ["x", "ENope", ""] and not stopped


def test_held_prefix_is_flushed_at_the_end() -> None:
    out, stopped = _run_stops(["END"], ["abcEN"])
    assert out == ["abc", "EN"] and not stopped


def test_earliest_of_several_stops_wins() -> None:
    out, stopped = _run_stops(["zz", "b"], ["aabzz"])
    assert "".join(out) == "aa" and stopped


def test_no_stops_passes_text_through() -> None:
    assert _run_stops([], ["a", "b"]) == (["a", "b", ""], False)


def test_fim_tokens_are_assembled_in_psm_order() -> None:
    fim = FimTokens(prefix=100, suffix=101, middle=102)
    assert assemble_fim_tokens([1, 2], [3], fim) == [100, 1, 2, 101, 3, 102]
    assert assemble_fim_tokens([], [], fim, bos=7) == [7, 100, 101, 102]


def test_chat_template_renders_in_a_sandbox() -> None:
    template = ChatTemplate(
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}{{ eos_token }}",
        eos_token="</s>",
    )
    rendered = template.render([ChatMessage("system", "be brief"), ChatMessage("user", "hi")])
    assert rendered == "<system>be brief<user>hi<assistant></s>"


def test_chat_template_raise_exception_is_a_runtime_error() -> None:
    template = ChatTemplate("{{ raise_exception('roles must alternate') }}")
    with pytest.raises(ModelRuntimeError) as caught:
        template.render([ChatMessage("user", "x")])
    assert caught.value.code == "runtime.template_failed"


def test_chat_template_cannot_reach_python_internals() -> None:
    template = ChatTemplate("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(ModelRuntimeError) as caught:
        template.render([ChatMessage("user", "x")])
    assert caught.value.code == "runtime.template_failed"


def test_fallback_chat_layout_ends_with_the_assistant_turn() -> None:
    text = render_fallback_chat([ChatMessage("user", "hello")])
    assert text == "User: hello\n\nAssistant:"


def test_ollama_generate_with_suffix_is_fim() -> None:
    parsed = parse_ollama_generate(
        {"model": "m", "prompt": "a", "suffix": "b", "options": {"num_predict": 5}}
    )
    assert parsed.prompt == FimPrompt("a", "b")
    assert parsed.model == "m:latest" and parsed.stream and parsed.options.num_predict == 5


def test_ollama_generate_raw_keeps_the_text_and_parses_specials() -> None:
    parsed = parse_ollama_generate({"model": "m", "prompt": "<|x|>", "raw": True, "stream": False})
    assert parsed.prompt == TextPrompt("<|x|>", parse_special=True) and not parsed.stream


def test_ollama_generate_without_raw_is_a_one_turn_chat() -> None:
    parsed = parse_ollama_generate({"model": "m", "prompt": "p", "system": "s"})
    assert parsed.prompt == ChatPrompt(
        (ChatMessage("system", "s"), ChatMessage("user", "p")), bare_without_template=True
    )


def test_ollama_options_are_parsed() -> None:
    options = parse_ollama_generate(
        {"model": "m", "options": {"num_predict": -1, "temperature": 0, "seed": 3, "stop": "\n", "top_k": 5}}
    ).options
    assert options.num_predict is None and options.temperature == 0.0 and options.seed == 3
    assert options.stop == ("\n",) and options.top_k == 5


def test_openai_completion_defaults_to_16_tokens_and_takes_suffix() -> None:
    parsed = parse_openai_completion({"model": "m", "prompt": ["x"], "suffix": "y", "stop": ["a", "b"]})
    assert parsed.prompt == FimPrompt("x", "y") and parsed.options.num_predict == 16
    assert parsed.options.stop == ("a", "b") and not parsed.stream


def test_openai_chat_takes_max_completion_tokens_and_usage_flag() -> None:
    parsed = parse_openai_chat(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "max_completion_tokens": 3,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    assert parsed.options.num_predict == 3 and parsed.stream and parsed.include_usage


@pytest.mark.parametrize("parse", [parse_ollama_embed, parse_openai_embeddings])
def test_an_embedding_request_has_a_bounded_number_of_texts(parse: Any) -> None:
    """8 MiB passes the proxy: as 8,000 short texts it would hold the runtime for minutes."""
    assert len(parse({"model": "e", "input": ["x"] * MAX_EMBED_INPUTS}).inputs) == MAX_EMBED_INPUTS
    with pytest.raises(BadRequestError, match=f"at most {MAX_EMBED_INPUTS} per request"):
        parse({"model": "e", "input": ["x"] * 8000})


def test_embed_input_may_be_a_string_or_a_list() -> None:
    assert parse_ollama_embed({"model": "e", "input": "x"}).inputs == ("x",)
    parsed = parse_ollama_embed({"model": "e", "input": ["x", "y"], "truncate": False})
    assert parsed.inputs == ("x", "y") and not parsed.truncate


@pytest.mark.parametrize(
    ("parse", "body"),
    [
        (parse_ollama_generate, []),
        (parse_ollama_generate, {"prompt": "x"}),
        (parse_ollama_generate, {"model": 3}),
        (parse_ollama_generate, {"model": "m", "prompt": 5}),
        (parse_ollama_generate, {"model": "m", "stream": "yes"}),
        (parse_ollama_generate, {"model": "m", "options": []}),
        (parse_ollama_generate, {"model": "m", "options": {"temperature": "hot"}}),
        (parse_ollama_generate, {"model": "m", "options": {"num_predict": True}}),
        (parse_ollama_generate, {"model": "m", "options": {"top_p": 2}}),
        (parse_ollama_generate, {"model": "m", "options": {"stop": [1]}}),
        (parse_ollama_generate, {"model": "m", "options": {"stop": ["x"] * 17}}),
        (parse_ollama_generate, {"model": "m", "images": ["..."]}),
        (parse_ollama_chat, {"model": "m", "messages": "hi"}),
        (parse_ollama_chat, {"model": "m", "messages": []}),
        (parse_ollama_chat, {"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
        (parse_ollama_chat, {"model": "m", "messages": [{"role": "user", "content": ["x"]}]}),
        (parse_ollama_embed, {"model": "m", "input": []}),
        (parse_ollama_embed, {"model": "m", "input": [1]}),
        (parse_openai_completion, {"model": "m", "prompt": ["a", "b"]}),
        (parse_openai_completion, {"model": "m", "n": 2}),
        (parse_openai_completion, {"model": "m", "max_tokens": -1}),
    ],
)
def test_bad_bodies_are_bad_requests(parse: Any, body: Any) -> None:
    with pytest.raises(BadRequestError) as caught:
        parse(body)
    assert caught.value.code == "runtime.bad_request"


def test_settings_refuse_colliding_names_and_bad_ports(tmp_path: Any) -> None:
    with pytest.raises(RuntimeSettingsError) as caught:
        BuiltinSettings(models={"a": tmp_path / "a", "A:latest": tmp_path / "b"})
    assert caught.value.field == "models"
    with pytest.raises(RuntimeSettingsError) as caught:
        BuiltinSettings(models={"a": tmp_path / "a"}, port=70000)
    assert caught.value.field == "port"
    with pytest.raises(RuntimeSettingsError):
        BuiltinSettings()
