"""The DESE IoT protocol in Python: the JSON Schemas as package data, and a validator that
applies every rule of the protocol, those outside the schemas included, with the verdict, the
reason label and the field path of the Rust SDK (`dese-protocol`).

    >>> from dese_schemas import validate, Invalid
    >>> topic, payload = validate("devices/org-1/pool-1/status",
    ...     b'{"status":"online","firmware_version":"1.0.0","timestamp":"2025-01-27T10:00:00Z"}')
    >>> payload["status"]
    'online'
    >>> try:
    ...     validate("devices/org-1/pool-1/status", b'{"status":"asleep","firmware_version":"1","timestamp":"2025-01-27T10:00:00Z"}')
    ... except Invalid as e:
    ...     print(e.reason, e.path)
    not_one_of status
"""

import json
from importlib import resources
from typing import Any, Dict

from .rules import KINDS, Invalid, Topic, parse_topic, validate, validate_message

__all__ = [
    "KINDS",
    "Invalid",
    "Topic",
    "asyncapi",
    "parse_topic",
    "schema",
    "validate",
    "validate_message",
]


def schema(name: str) -> Dict[str, Any]:
    """The JSON Schema of a message kind (`telemetry`, ..., `alert`) or of a command's
    parameters (`parameters/set_pump`), as shipped with the package."""
    path = resources.files(__package__) / "schemas" / "json" / f"{name}.schema.json"
    return json.loads(path.read_text(encoding="utf-8"))


def asyncapi() -> Dict[str, Any]:
    """The AsyncAPI 3.0 document of the protocol."""
    path = resources.files(__package__) / "schemas" / "asyncapi.json"
    return json.loads(path.read_text(encoding="utf-8"))
