"""The knobs of the post-processing pipeline, one frozen dataclass shared by every filter."""

from __future__ import annotations

from dataclasses import dataclass

# Special tokens FIM models leak into their output (Qwen2.5-Coder, StarCoder/StarCoder2, DeepSeek-Coder,
# CodeLlama, Codestral, CodeGemma, Llama 3, generic chat templates). The completion is cut at the first one.
DEFAULT_STOP_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|eot_id|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    "<|fim_pad|>",
    "<|file_sep|>",
    "<|file_separator|>",
    "<|repo_name|>",
    "<fim_prefix>",
    "<fim_suffix>",
    "<fim_middle>",
    "<fim_pad>",
    "<file_sep>",
    "<filename>",
    "<gh_stars>",
    "<repo_name>",
    "<｜end▁of▁sentence｜>",
    "<｜fim▁begin｜>",
    "<｜fim▁hole｜>",
    "<｜fim▁end｜>",
    "<EOT>",
    "<PRE>",
    "<SUF>",
    "<MID>",
    "</s>",
    "[PREFIX]",
    "[SUFFIX]",
)


@dataclass(frozen=True)
class PostprocessConfig:
    """Settings of the post-processing filters; defaults suit the FIM models cube-lsp has templates for."""

    stop_tokens: tuple[str, ...] = DEFAULT_STOP_TOKENS  # the completion is cut at the first of these
    think_open: str = "<think>"  # start of a reasoning block; unterminated means the completion is dropped
    think_close: str = "</think>"  # end of a reasoning block; the block is removed with its markers
    strip_code_fences: bool = True  # remove ``` fences a model wraps around code (never in markdown files)
    prefix_window_lines: int = 50  # filters look at most this many lines above the cursor line
    prefix_window_chars: int = 4000  # ... and at most this many characters of them
    suffix_window_lines: int = 50  # filters look at most this many lines below the cursor
    suffix_window_chars: int = 4000  # ... and at most this many characters of them
    tab_size: int = 4  # columns of a tab when comparing indentation
    repetition_threshold: int = 3  # a line or block repeated this many times in a row is cut to one copy
    max_repeated_block_lines: int = 8  # longest block of lines checked for repetition
    anchor_min_chars: int = 8  # least non-blank characters of suffix lines that count as "the suffix starts"
    anchor_max_lines: int = 3  # most suffix lines joined to reach anchor_min_chars
    overlap_max_tokens: int = 256  # longest tail of the completion compared with the suffix head, in tokens
