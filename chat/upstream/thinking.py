"""Split reasoning that was left inline in the content.

When vLLM runs without `--reasoning-parser`, thinking models write their
reasoning into the content between tags: `<think>…</think>` (Qwen, Gemma,
DeepSeek-style) or `[THINK]…[/THINK]` (Mistral/Magistral). Some chat
templates already open `<think>` in the prompt, so the output starts inside
the block and only `</think>` appears: pass `opened=True` for those (for a
complete text, `split_thinking` detects it by itself).

The splitter is streaming-safe: a tag may arrive cut across any number of
deltas; text that might be the start of a tag is held back until it is clear.
"""

from __future__ import annotations

__all__ = ["MISTRAL_TAGS", "THINK_TAGS", "ThinkSplitter", "split_thinking"]

THINK_TAGS = ("<think>", "</think>")
MISTRAL_TAGS = ("[THINK]", "[/THINK]")

REASONING = "reasoning"
CONTENT = "content"


class ThinkSplitter:
    """feed(text) -> [(kind, text), ...] with kind "reasoning" or "content"."""

    def __init__(self, tags: tuple[str, str] = THINK_TAGS, *, opened: bool = False) -> None:
        self.open_tag, self.close_tag = tags
        self.inside = opened
        self._held = ""

    def feed(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        buffer = self._held + text
        self._held = ""
        while buffer:
            tag = self.close_tag if self.inside else self.open_tag
            kind = REASONING if self.inside else CONTENT
            at = buffer.find(tag)
            if at >= 0:
                _append(out, kind, buffer[:at])
                buffer = buffer[at + len(tag) :]
                self.inside = not self.inside
                continue
            keep = _partial_tag_suffix(buffer, tag)
            _append(out, kind, buffer[: len(buffer) - keep])
            self._held = buffer[len(buffer) - keep :]
            break
        return out

    def flush(self) -> list[tuple[str, str]]:
        """End of text: release anything held back as a possible tag start."""
        out: list[tuple[str, str]] = []
        _append(out, REASONING if self.inside else CONTENT, self._held)
        self._held = ""
        return out


def split_thinking(text: str, tags: tuple[str, str] = THINK_TAGS) -> tuple[str, str]:
    """(reasoning, content) of a complete text. A close tag with no open tag
    before it means the template had opened the block: everything before it
    is reasoning."""
    open_tag, close_tag = tags
    close_at = text.find(close_tag)
    opened = close_at >= 0 and open_tag not in text[:close_at]
    splitter = ThinkSplitter(tags, opened=opened)
    parts = splitter.feed(text) + splitter.flush()
    reasoning = "".join(t for kind, t in parts if kind == REASONING)
    content = "".join(t for kind, t in parts if kind == CONTENT)
    return reasoning, content


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper start of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


def _append(out: list[tuple[str, str]], kind: str, text: str) -> None:
    if not text:
        return
    if out and out[-1][0] == kind:
        out[-1] = (kind, out[-1][1] + text)
    else:
        out.append((kind, text))
