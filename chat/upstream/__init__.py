"""The vLLM protocol layer: pure Python, no Django (a test walks the imports).

Everything in `__all__` is the public API; modules:

    options   THE registry of request options
    payload   model + messages + values -> request body, with validation
    sse       sans-I/O server-sent-events decoder
    chunks    stream chunks -> events; StreamAccumulator folds them
    thinking  splits <think>/[THINK] reasoning left inline in content
    families  per-family profiles (Qwen, Llama, Mistral, Gemma, generic)
    export    request -> cURL / Python / JSON, and cURL -> request
    errors    the UpstreamError hierarchy
    urls      base URL normalisation
    client    the only I/O: httpx calls to vLLM
"""

from .chunks import (
    ChoiceFinished,
    ContentDelta,
    Event,
    LogprobsDelta,
    ReasoningDelta,
    RoleDelta,
    StreamAccumulator,
    StreamDone,
    StreamMeta,
    StreamParser,
    StreamTruncated,
    ToolCallDelta,
    UsageReport,
    parse_chunk,
)
from .client import UpstreamClient, close_clients, get_client
from .errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamStreamError,
    UpstreamTimeout,
    parse_error_body,
)
from .export import CurlParseError, ImportedRequest, parse_curl, to_curl, to_json, to_python
from .families import FAMILIES, Family, detect_family, is_reasoning_model, profile_for
from .options import GROUPS, OPTIONS, OPTIONS_BY_NAME, Option, OptionError, validate_value
from .payload import PayloadError, build_payload, check_image_url, parse_data_url, validate_messages
from .sse import DONE, SSEDecoder
from .thinking import MISTRAL_TAGS, THINK_TAGS, ThinkSplitter, split_thinking
from .urls import normalize_base_url

__all__ = [
    "ChoiceFinished",
    "ContentDelta",
    "CurlParseError",
    "DONE",
    "Event",
    "FAMILIES",
    "Family",
    "GROUPS",
    "ImportedRequest",
    "LogprobsDelta",
    "MISTRAL_TAGS",
    "OPTIONS",
    "OPTIONS_BY_NAME",
    "Option",
    "OptionError",
    "PayloadError",
    "ReasoningDelta",
    "RoleDelta",
    "SSEDecoder",
    "StreamAccumulator",
    "StreamDone",
    "StreamMeta",
    "StreamParser",
    "StreamTruncated",
    "THINK_TAGS",
    "ThinkSplitter",
    "ToolCallDelta",
    "UpstreamClient",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamHTTPError",
    "UpstreamProtocolError",
    "UpstreamStreamError",
    "UpstreamTimeout",
    "UsageReport",
    "build_payload",
    "check_image_url",
    "close_clients",
    "detect_family",
    "get_client",
    "is_reasoning_model",
    "normalize_base_url",
    "parse_chunk",
    "parse_curl",
    "parse_data_url",
    "parse_error_body",
    "profile_for",
    "split_thinking",
    "to_curl",
    "to_json",
    "to_python",
    "validate_messages",
    "validate_value",
]
