"""Ready-made values from the vendor pages: tool templates and JSON-schema examples."""

from __future__ import annotations

TOOL_TEMPLATES = {
    # llama.txt / qwen.txt
    "get_current_weather": {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather for a city or district.",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "City or district, such as Tokyo, San Francisco, or Bengaluru.",
                    },
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit."},
                },
                "required": ["location"],
            },
        },
    },
    # gemma4.txt
    "get_weather": {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather for a location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "City name, e.g. San Francisco, CA"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"},
                },
                "required": ["location"],
            },
        },
    },
}

SCHEMA_EXAMPLES = {
    # llama.txt: response_format json_schema "tagline_response"
    "tagline_response": {
        "type": "object",
        "properties": {"taglines": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 3}},
        "required": ["taglines"],
        "additionalProperties": False,
    },
    # mistral.txt: structured_outputs.json sentiment
    "sentiment": {
        "type": "object",
        "properties": {
            "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
            "confidence": {"type": "number"},
        },
        "required": ["sentiment", "confidence"],
        "additionalProperties": False,
    },
}
