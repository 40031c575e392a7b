"""The simulated models: one `ModelSpec` per served model name."""

from __future__ import annotations

from dataclasses import dataclass

# How a family decides whether to think.
THINKING_DEFAULT_ON = "default_on"  # Qwen 3: thinks unless chat_template_kwargs.enable_thinking is false
THINKING_OPT_IN = "opt_in"  # Gemma 4: thinks only when enable_thinking is true
THINKING_ALWAYS = "always"  # Magistral / *-Reasoning
THINKING_NEVER = "never"  # Llama, Mistral instruct

# Where the reasoning text ends up in the response.
REASONING_PARSED = "parsed"  # `reasoning` (vLLM 0.32 with --reasoning-parser)
REASONING_INLINE = "inline"  # <think>…</think> left in `content` (no reasoning parser)
REASONING_LEGACY = "legacy"  # `reasoning_content` (older vLLM)

_FAMILY_THINKING = {
    "qwen": THINKING_DEFAULT_ON,
    "gemma": THINKING_OPT_IN,
    "llama": THINKING_NEVER,
    "mistral": THINKING_NEVER,
    "generic": THINKING_NEVER,
}

# Think markers as the family's template writes them, and the EOS token text
# that appears when a client asks for skip_special_tokens=false with ignore_eos.
_FAMILY_TOKENS = {
    "qwen": ("<think>", "</think>", "<|im_end|>"),
    "gemma": ("<think>", "</think>", "<end_of_turn>"),
    "mistral": ("[THINK]", "[/THINK]", "</s>"),
    "llama": ("<think>", "</think>", "<|eot_id|>"),
    "generic": ("<think>", "</think>", "</s>"),
}

# Vocabulary sizes as the families' models report them (logit_bias and
# top_logprobs -1 are checked against them, as vLLM does).
_FAMILY_VOCAB = {"qwen": 151936, "gemma": 262144, "mistral": 131072, "llama": 128256, "generic": 32000}


@dataclass(frozen=True)
class ModelSpec:
    """One simulated model.

    `thinking` defaults from the family (see the THINKING_* constants);
    `reasoning_output` chooses the response field (REASONING_*);
    `multimodal` accepts `image_url` parts; `auto_tools` mirrors vLLM's
    `--enable-auto-tool-choice` (without it, `tool_choice: "auto"` is a 400);
    `vocab_size` defaults from the family.
    """

    id: str
    family: str = "generic"
    thinking: str | None = None
    reasoning_output: str = REASONING_PARSED
    multimodal: bool = False
    auto_tools: bool = True
    max_model_len: int = 32768
    vocab_size: int | None = None

    @property
    def thinking_mode(self) -> str:
        return self.thinking or _FAMILY_THINKING.get(self.family, THINKING_NEVER)

    @property
    def vocab(self) -> int:
        return self.vocab_size or _FAMILY_VOCAB.get(self.family, _FAMILY_VOCAB["generic"])

    @property
    def think_open(self) -> str:
        return _FAMILY_TOKENS.get(self.family, _FAMILY_TOKENS["generic"])[0]

    @property
    def think_close(self) -> str:
        return _FAMILY_TOKENS.get(self.family, _FAMILY_TOKENS["generic"])[1]

    @property
    def eos_text(self) -> str:
        return _FAMILY_TOKENS.get(self.family, _FAMILY_TOKENS["generic"])[2]

    def thinks(self, chat_template_kwargs: dict | None) -> bool:
        """Whether this request makes the model reason, as its family would."""
        enable = (chat_template_kwargs or {}).get("enable_thinking")
        mode = self.thinking_mode
        if mode == THINKING_ALWAYS:
            return True
        if mode == THINKING_DEFAULT_ON:
            return enable is not False
        if mode == THINKING_OPT_IN:
            return enable is True
        return False


DEFAULT_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("sim/qwen3", family="qwen"),
    ModelSpec("sim/qwen3-no-parser", family="qwen", reasoning_output=REASONING_INLINE),
    ModelSpec("sim/qwen3-legacy", family="qwen", reasoning_output=REASONING_LEGACY),
    ModelSpec("sim/llama-3.3", family="llama"),
    ModelSpec("sim/mistral-small", family="mistral"),
    ModelSpec("sim/magistral", family="mistral", thinking=THINKING_ALWAYS),
    ModelSpec("sim/gemma-4", family="gemma", multimodal=True),
)
