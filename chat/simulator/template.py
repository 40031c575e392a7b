"""The simulator's chat templates, /tokenize and /detokenize, and its /metrics page.

A prompt is rendered per family (Qwen's <|im_start|>, Llama's headers, Mistral's [INST],
Gemma's <start_of_turn>) as a list of token pieces whose length is exactly the `prompt_tokens`
a completion of the same request reports (validate.count_prompt_tokens): per message four
framing pieces and the text, 256 pieces per image, the tool definitions' preamble (40 pieces)
and JSON, the three-piece generation prompt, and Qwen's empty think block when thinking is off.
Token ids come from one vocabulary shared by the process, so /detokenize inverts /tokenize;
`token_strs` use the byte-level alphabet real BPE tokenizers show (Ġ for a space, Ċ for \\n).
"""

from __future__ import annotations

import json
import threading
import time
from functools import cache

from prometheus_client.utils import floatToGoString

from .specs import ModelSpec
from .tokens import tokenize
from .validate import _ROLES, message_parts

# (message start, role end, message end, generation prompt) per family; each is one piece.
_FRAMES = {
    "qwen": ("<|im_start|>", "\n", "<|im_end|>\n"),
    "llama": ("<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>"),
    "mistral": ("[INST]", "\n", "[/INST]"),
    "gemma": ("<start_of_turn>", "\n", "<end_of_turn>\n"),
    "generic": ("<|im_start|>", "\n", "<|im_end|>\n"),
}
_IMAGE = {"qwen": "<|image_pad|>", "gemma": "<image_soft_token>", "mistral": "[IMG]", "llama": "<|image|>"}
_TOOLS_OPEN = "<tools>"
_TOOLS_PREAMBLE = (
    "# Tools\n\nYou may call one or more functions to assist with the user query. "
    "You are provided with function signatures within <tools></tools> XML tags:\n"
)


def _frame(spec: ModelSpec) -> tuple[str, str, str]:
    return _FRAMES.get(spec.family, _FRAMES["generic"])


def _role(spec: ModelSpec, role: str) -> str:
    return {"gemma": {"assistant": "model"}}.get(spec.family, {}).get(role, role)


@cache
def _preamble() -> tuple[str, ...]:
    """Exactly 40 pieces: the tools preamble's tokens, padded with newlines, then <tools>."""
    pieces = tokenize(_TOOLS_PREAMBLE)[:39]
    return tuple(pieces + ["\n"] * (39 - len(pieces)) + [_TOOLS_OPEN])


def render(spec: ModelSpec, messages: list[dict], tools: list[dict], *, thinking: bool,
           add_generation_prompt: bool = True) -> list[str]:
    """The templated prompt as token pieces (see the module docstring for the count)."""
    start, role_end, end = _frame(spec)
    pieces: list[str] = []
    if tools:
        pieces += _preamble()
        pieces += tokenize(json.dumps(tools))
    for message in messages:
        role = message.get("role")
        if role not in _ROLES:
            continue
        text, images, _ = message_parts(message.get("content"))
        pieces += [start, _role(spec, role), role_end]
        pieces += [_IMAGE.get(spec.family, "<image>")] * (256 * len(images))
        pieces += tokenize(text) if text else []
        if message.get("tool_calls"):
            pieces += tokenize(json.dumps(message["tool_calls"]))
        pieces.append(end)
    if add_generation_prompt:
        pieces += [start, _role(spec, "assistant"), role_end]
        if spec.family == "qwen" and not thinking:
            pieces += ["<think>", "\n\n", "</think>", "\n\n"]
    return pieces


# --- the vocabulary: ids for pieces, shared by the process -------------------------------------

_lock = threading.Lock()
_ids: dict[str, int] = {}
_pieces: list[str] = []


def ids(pieces: list[str]) -> list[int]:
    out = []
    with _lock:
        for piece in pieces:
            token = _ids.get(piece)
            if token is None:
                token = _ids[piece] = len(_pieces)
                _pieces.append(piece)
            out.append(token)
    return out


def text_of(tokens: list[int]) -> str:
    """The text of token ids; KeyError for an id never handed out."""
    with _lock:
        return "".join(_pieces[t] if 0 <= t < len(_pieces) else _missing(t) for t in tokens)


def _missing(token: int) -> str:
    raise KeyError(token)


@cache
def _byte_alphabet() -> dict[int, str]:
    """GPT-2's bytes-to-unicode table: printable bytes stand for themselves, the rest shift up."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def token_str(piece: str) -> str:
    """As a byte-level BPE shows a token; a special token (a frame piece may end in a newline,
    "<|im_end|>\n") is written as it is."""
    alphabet = _byte_alphabet()
    special = piece.rstrip("\n")
    if special.startswith(("<", "[")) and special.endswith((">", "]")) and len(special) > 2:
        return special + "".join(alphabet[b] for b in piece[len(special):].encode())
    return "".join(alphabet[b] for b in piece.encode("utf-8"))


# --- /metrics ------------------------------------------------------------------------------------

METRICS_CONTENT_TYPE = b"text/plain; version=1.0.0; charset=utf-8"


class Gauges:
    """What /metrics reports: requests running (generating) now, and the prefix cache's counters.

    A request's prompt counts as a prefix-cache hit for the part an earlier request already sent
    (all its messages but the last), the way vLLM's automatic prefix caching would reuse it.
    """

    def __init__(self, models: list[str]) -> None:
        self.models = models
        self.running = {m: 0 for m in models}
        self.queries = {m: 0 for m in models}
        self.hits = {m: 0 for m in models}
        self.created = time.time()
        self._seen: set[str] = set()

    def started(self, model: str, messages: list[dict], prompt_tokens: int, prefix_tokens: int) -> None:
        self.running[model] = self.running.get(model, 0) + 1
        self.queries[model] = self.queries.get(model, 0) + prompt_tokens
        prefix = json.dumps([model, messages[:-1]], sort_keys=True, default=str)
        if len(messages) > 1 and prefix in self._seen:
            self.hits[model] = self.hits.get(model, 0) + min(prefix_tokens, prompt_tokens)
        self._seen.add(json.dumps([model, messages], sort_keys=True, default=str))
        if len(self._seen) > 10_000:
            self._seen.clear()

    def finished(self, model: str) -> None:
        self.running[model] = max(0, self.running.get(model, 0) - 1)

    def page(self, max_num_seqs: int = 256) -> bytes:
        """Prometheus text in vLLM's names, HELP lines and label order (11g_metrics)."""
        lines = []

        def family(name: str, kind: str, help_text: str, values: dict[str, float]) -> None:
            # As prometheus_client writes them for vLLM: a counter as name_total, and its
            # start time as a gauge family of its own, name_created.
            names = [(name + "_total", kind, values), (name + "_created", "gauge", {m: self.created for m in values})] \
                if kind == "counter" else [(name, kind, values)]
            for full, type_, rows in names:
                lines.append(f"# HELP {full} {help_text}")
                lines.append(f"# TYPE {full} {type_}")
                for model, value in rows.items():
                    lines.append(f'{full}{{engine="0",model_name="{model}"}} {floatToGoString(value)}')

        family("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", self.running)
        family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
               {m: 0 for m in self.models})
        family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
               {m: min(1.0, n / max_num_seqs) for m, n in self.running.items()})
        family("vllm:prefix_cache_queries", "counter",
               "Prefix cache queries, in terms of number of queried tokens.", self.queries)
        family("vllm:prefix_cache_hits", "counter",
               "Prefix cache hits, in terms of number of cached tokens.", self.hits)
        return ("\n".join(lines) + "\n").encode()
