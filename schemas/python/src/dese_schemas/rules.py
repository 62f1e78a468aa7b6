"""Every rule of the DESE IoT protocol, judged in the order the Rust SDK (`dese-protocol`) judges
them, so that a payload gets the same verdict, reason and field path in Python as in Rust.

The order: the topic; the payload's size and nesting, before parsing; JSON syntax; the shape of
the message (each field's presence and JSON type, in the order of the message's fields); a
protocol field given twice; then each field's value (ids, ranges, texts, timestamps,
enumerations, the tenant check), in the order the Rust decoder reads them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

MAX_PAYLOAD = 16 * 1024
MAX_DEPTH = 16
KINDS = ("telemetry", "commands", "command_response", "status", "config", "alert")
MAX_TOPIC_LEN = len("devices") + 3 + 2 * 64 + len("command_response")
ID_MAX = {"organization": 64, "device": 64, "command": 128}
FIRMWARE_VERSION_MAX = 64
ALERT_MESSAGE_MAX = 512
ERROR_MAX = 512
UNKNOWN_COMMAND_MAX = 64
SENSOR_NAME_MAX = 32
KNOWN_SENSORS = ("ph", "chlorine", "temperature", "orp", "tds", "flow_rate")
COMMANDS = (
    "set_pump",
    "set_ph_target",
    "set_chlorine_target",
    "reboot",
    "reset_config",
    "calibrate_sensor",
)
DEVICE_STATES = ("online", "offline", "error", "maintenance")
SEVERITIES = ("info", "warning", "critical")
PUMP_STATES = ("on", "off")

I64_MIN, I64_MAX, U64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


class Invalid(Exception):
    """A refused message: `reason` is the Rust SDK's label (`out_of_range`, `tenant_mismatch`,
    ...), `path` the dotted field path (`""` for the whole payload, `None` when the problem is
    not in a field: the topic, the size, the syntax)."""

    def __init__(self, reason: str, message: str, path: Optional[str] = None):
        super().__init__(f"{path}: {message}" if path else message)
        self.reason = reason
        self.path = path


@dataclass(frozen=True)
class Topic:
    """`devices/{org}/{device}/{kind}`, checked."""

    org: str
    device: str
    kind: str


# ---------------------------------------------------------------------------------------------
# Topics and ids


def id_problem(value: str, max_len: int) -> Optional[str]:
    """What is wrong with an id, or None: not empty, at most `max_len` UTF-8 bytes, no leading
    `$`, no `/`, `+`, `#`, and no control character (C0, DEL, C1)."""
    raw = value.encode("utf-8", "surrogatepass")
    if not raw:
        return "is empty"
    if len(raw) > max_len:
        return f"is {len(raw)} bytes long, expected at most {max_len}"
    if value.startswith("$"):
        return "starts with '$'"
    for ch in value:
        code = ord(ch)
        if ch in "/+#" or code < 0x20 or code == 0x7F or 0x80 <= code <= 0x9F:
            return f"contains the forbidden character {ch!r}"
    return None


def parse_topic(topic: str) -> Topic:
    if len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_LEN:
        raise Invalid("topic", f"topic is longer than {MAX_TOPIC_LEN} bytes")
    levels = topic.split("/")
    if len(levels) != 4:
        raise Invalid("topic", f"topic has {len(levels)} levels, expected 4")
    prefix, org, device, kind = levels
    if prefix != "devices":
        raise Invalid("topic", "topic does not start with devices/")
    for level, (value, what) in ((2, (org, "organization")), (3, (device, "device"))):
        problem = id_problem(value, ID_MAX[what])
        if problem:
            raise Invalid("topic", f"topic level {level}: {what} id {problem}")
    if kind not in KINDS:
        raise Invalid("topic", f"topic level 4: expected one of {', '.join(KINDS)}")
    return Topic(org, device, kind)


# ---------------------------------------------------------------------------------------------
# Bytes and JSON


def nesting_exceeds(payload: bytes, limit: int) -> bool:
    """Whether objects and arrays nest deeper than `limit`, ignoring brackets inside strings."""
    depth, i, n = 0, 0, len(payload)
    while i < n:
        b = payload[i]
        if b == 0x22:  # a string, escapes included
            i += 1
            while i < n:
                c = payload[i]
                if c == 0x5C:
                    i += 1
                elif c == 0x22:
                    break
                i += 1
        elif b in (0x7B, 0x5B):
            depth += 1
            if depth > limit:
                return True
        elif b in (0x7D, 0x5D):
            depth = max(depth - 1, 0)
        i += 1
    return False


class Obj(dict):
    """A JSON object that remembers the keys given more than once (the last value wins, as in
    Rust's generic parse)."""

    duplicates: frozenset = frozenset()


def _pairs(pairs: List[Tuple[str, Any]]) -> Obj:
    obj, twice = Obj(), set()
    for key, value in pairs:
        if key in obj:
            twice.add(key)
        obj[key] = value
    obj.duplicates = frozenset(twice)
    return obj


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class Overflow(float):
    """A JSON number too large for a double (`1e400`). Rust's parser refuses it as a syntax
    error wherever it reads the value, and skips it in a field the message does not know."""


def _parse_float(text: str) -> float:
    value = float(text)
    return Overflow(value) if math.isinf(value) else value


def _parse_int(text: str) -> Any:
    value = int(text)
    if I64_MIN <= value <= U64_MAX:
        return value
    # Beyond 64 bits a JSON integer is read as a double, as serde_json reads it.
    return _parse_float(text)


_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def parse_json(payload: bytes) -> Any:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Invalid("syntax", f"payload is not UTF-8: invalid byte at offset {e.start}")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_constant=_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
        )
    except (ValueError, RecursionError) as e:
        raise Invalid("syntax", f"payload is not JSON: {e}")
    if _SURROGATE.search(text) and _has_lone_surrogate(value):
        raise Invalid("syntax", "payload is not JSON: a lone surrogate in a string")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------
# The shape of each message: fields, in order, with their JSON type and presence.

STR, NUM, BOOL, ANY_OBJ = "string", "number", "boolean", "object"


@dataclass(frozen=True)
class Field:
    name: str
    ty: Any  # STR, NUM, BOOL, ANY_OBJ, ("obj", fields) or ("map", fields)
    required: bool


def req(name: str, ty: Any) -> Field:
    return Field(name, ty, True)


def opt(name: str, ty: Any) -> Field:
    return Field(name, ty, False)


SENSORS = (
    req("ph", NUM),
    req("chlorine", NUM),
    req("temperature", NUM),
    opt("orp", NUM),
    opt("tds", NUM),
    opt("flow_rate", NUM),
)
METADATA = (opt("battery", NUM), opt("signal_strength", NUM), req("firmware_version", STR))
CALIBRATION = (opt("offset", NUM), opt("scale", NUM))
THRESHOLD = (opt("min", NUM), opt("max", NUM))
DEVICE_CONFIG = (
    opt("telemetry_interval", NUM),
    opt("mqtt_keepalive", NUM),
    opt("sensor_calibration", ("map", CALIBRATION)),
    opt("alert_thresholds", ("map", THRESHOLD)),
)
SHAPES: Dict[str, Sequence[Field]] = {
    "telemetry": (
        req("device_id", STR),
        req("timestamp", STR),
        req("organization_id", STR),
        req("sensors", ("obj", SENSORS)),
        req("metadata", ("obj", METADATA)),
    ),
    "commands": (
        req("command_id", STR),
        req("device_id", STR),
        req("command", STR),
        opt("parameters", ANY_OBJ),
        req("timestamp", STR),
    ),
    "command_response": (
        req("command_id", STR),
        req("success", BOOL),
        opt("response", ANY_OBJ),
        opt("error", STR),
        req("timestamp", STR),
    ),
    "status": (
        req("status", STR),
        opt("battery", NUM),
        opt("signal_strength", NUM),
        req("firmware_version", STR),
        req("timestamp", STR),
    ),
    "config": (
        req("device_id", STR),
        req("config", ("obj", DEVICE_CONFIG)),
        req("timestamp", STR),
    ),
    "alert": (
        req("severity", STR),
        req("message", STR),
        opt("sensor", STR),
        opt("value", NUM),
        opt("threshold", NUM),
        req("timestamp", STR),
    ),
}


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _utf8_key(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


def _walk(value: Any, ty: Any, path: str) -> None:
    expected = ty if isinstance(ty, str) else ANY_OBJ
    ok = {
        STR: isinstance(value, str),
        NUM: is_number(value),
        BOOL: isinstance(value, bool),
        ANY_OBJ: isinstance(value, dict),
    }[expected]
    if not ok:
        raise Invalid("wrong_type", f"expected {expected}, got {json_type(value)}", path)
    if isinstance(ty, tuple) and ty[0] == "obj":
        _fields(value, ty[1], path)
    elif isinstance(ty, tuple) and ty[0] == "map":
        for key in sorted(value, key=_utf8_key):
            _walk(value[key], ("obj", ty[1]), _join(path, key))


def _fields(obj: dict, fields: Sequence[Field], path: str) -> None:
    for field in fields:
        here = _join(path, field.name)
        if field.name not in obj:
            if field.required:
                raise Invalid("missing_field", "missing required field", here)
            continue
        value = obj[field.name]
        if value is None and not field.required:
            continue
        _walk(value, field.ty, here)


def _any_overflow(value: Any) -> bool:
    if isinstance(value, Overflow):
        return True
    if isinstance(value, dict):
        return any(_any_overflow(v) for v in value.values())
    if isinstance(value, list):
        return any(_any_overflow(v) for v in value)
    return False


def _reads_overflow(value: Any, fields: Sequence[Field]) -> bool:
    """Whether a number too large for a double is where the message's fields are read (the
    protocol's own fields, and everything inside `parameters` and `response`)."""
    if not isinstance(value, dict):
        return False
    for field in fields:
        inner = value.get(field.name)
        if isinstance(field.ty, tuple) and field.ty[0] == "obj":
            if _reads_overflow(inner, field.ty[1]):
                return True
        elif isinstance(field.ty, tuple) and field.ty[0] == "map" and isinstance(inner, dict):
            if any(_reads_overflow(v, field.ty[1]) for v in inner.values()):
                return True
        elif _any_overflow(inner):
            return True
    return False


def _struct_duplicates(value: Any, fields: Sequence[Field]) -> bool:
    """Whether a field the message names was given twice, in the payload's object or in one of
    its inner objects (unknown fields and the keys of free maps may repeat)."""
    if not isinstance(value, Obj):
        return False
    names = {f.name for f in fields}
    if value.duplicates & names:
        return True
    for field in fields:
        inner = value.get(field.name)
        if isinstance(field.ty, tuple) and field.ty[0] == "obj":
            if _struct_duplicates(inner, field.ty[1]):
                return True
        elif isinstance(field.ty, tuple) and field.ty[0] == "map" and isinstance(inner, dict):
            if any(_struct_duplicates(v, field.ty[1]) for v in inner.values()):
                return True
    return False


# ---------------------------------------------------------------------------------------------
# Values


def _id(value: str, path: str, kind: str) -> None:
    problem = id_problem(value, ID_MAX[kind])
    if problem:
        raise Invalid("bad_id", f"{kind} id {problem}", path)


def _tenant(payload: str, topic: str, path: str) -> None:
    if payload != topic:
        raise Invalid("tenant_mismatch", f"{payload!r} is not the topic's {topic!r}", path)


def _device_of(value: str, topic: Topic) -> None:
    _id(value, "device_id", "device")
    _tenant(value, topic.device, "device_id")


_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def timestamp_problem(value: str) -> Optional[str]:
    """What is wrong with a timestamp, or None: ISO 8601 in UTC (`Z`, or an offset of zero),
    at most nine fraction digits, a real date and time (no leap second)."""
    m = _TIMESTAMP.fullmatch(value)
    if not m:
        return "expected an ISO 8601 timestamp such as 2025-01-27T10:00:00Z"
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if m.group(9) and (int(m.group(10)) or int(m.group(11))):
        return "is not in UTC"
    if not 1 <= month <= 12:
        return f"month {month} does not exist"
    if not 1 <= day <= _days_in_month(year, month):
        return f"day {day} does not exist"
    if hour > 23 or minute > 59 or second > 59:
        return "the time of day does not exist"
    return None


def _timestamp(value: str, path: str) -> None:
    problem = timestamp_problem(value)
    if problem:
        raise Invalid("bad_timestamp", problem, path)


def _text(value: str, max_len: int, path: str) -> None:
    size = len(value.encode("utf-8", "surrogatepass"))
    if size == 0 or size > max_len:
        raise Invalid("bad_text", f"is {size} bytes, expected 1 to {max_len}", path)


def _one_of(value: str, names: Sequence[str], path: str) -> None:
    if value not in names:
        raise Invalid("not_one_of", f"expected one of {', '.join(names)}", path)


def _sensor(value: str, path: str) -> None:
    if value in KNOWN_SENSORS:
        return
    raw = value.encode("utf-8", "surrogatepass")
    ok = 0 < len(raw) <= SENSOR_NAME_MAX and all(
        chr(b).isascii() and (chr(b).isalnum() or b in b"_-") for b in raw
    )
    if not ok:
        raise Invalid(
            "bad_text", f"expected 1 to {SENSOR_NAME_MAX} ASCII letters, digits, '_' or '-'", path
        )


def _range(value: float, path: str, lo: Optional[float], hi: Optional[float], above: bool = False):
    if math.isnan(value) or math.isinf(value):
        raise Invalid("out_of_range", "expected a finite number", path)
    bad = (lo is not None and (value <= lo if above else value < lo)) or (
        hi is not None and value > hi
    )
    if bad:
        raise Invalid("out_of_range", f"{value} is out of range", path)


def _integer(value: Any, path: str, lo: int, hi: int) -> int:
    """An integer field: a number with a zero fraction (`650.0`) counts as an integer."""
    if isinstance(value, int):
        if value > I64_MAX:
            raise Invalid("out_of_range", f"{value} is out of range", path)
        number = value
    else:
        if not -9.2e18 <= value <= 9.2e18:
            raise Invalid("out_of_range", f"{value} is out of range", path)
        if int(value) != value:
            raise Invalid("wrong_type", f"expected an integer, got {value}", path)
        number = int(value)
    if number < lo or number > hi:
        raise Invalid("out_of_range", f"{number} is out of range, expected {lo} to {hi}", path)
    return number


def _telemetry(p: dict, topic: Topic) -> None:
    _device_of(p["device_id"], topic)
    _timestamp(p["timestamp"], "timestamp")
    _id(p["organization_id"], "organization_id", "organization")
    _tenant(p["organization_id"], topic.org, "organization_id")
    s = p["sensors"]
    _range(float(s["ph"]), "sensors.ph", 0.0, 14.0)
    _range(float(s["chlorine"]), "sensors.chlorine", 0.0, None)
    _range(float(s["temperature"]), "sensors.temperature", -273.15, None)
    if s.get("orp") is not None:
        _integer(s["orp"], "sensors.orp", -(2**31), 2**31 - 1)
    if s.get("tds") is not None:
        _integer(s["tds"], "sensors.tds", 0, 2**32 - 1)
    if s.get("flow_rate") is not None:
        _range(float(s["flow_rate"]), "sensors.flow_rate", 0.0, None)
    m = p["metadata"]
    if m.get("battery") is not None:
        _integer(m["battery"], "metadata.battery", 0, 100)
    if m.get("signal_strength") is not None:
        _integer(m["signal_strength"], "metadata.signal_strength", -128, 0)
    _text(m["firmware_version"], FIRMWARE_VERSION_MAX, "metadata.firmware_version")


def _parameter(params: dict, key: str, path: str) -> Any:
    if key not in params:
        raise Invalid("missing_field", "missing required field", path)
    return params[key]


def _number_parameter(params: dict, key: str, path: str, integer: bool = False) -> Any:
    value = _parameter(params, key, path)
    if not is_number(value):
        expected = "an integer" if integer else "a number"
        raise Invalid("wrong_type", f"expected {expected}, got {json_type(value)}", path)
    return value


def _string_parameter(params: dict, key: str, path: str) -> str:
    value = _parameter(params, key, path)
    if not isinstance(value, str):
        raise Invalid("wrong_type", f"expected a string, got {json_type(value)}", path)
    return value


def _command(p: dict, topic: Topic, refuse_unknown: bool) -> None:
    _id(p["command_id"], "command_id", "command")
    _device_of(p["device_id"], topic)
    name = p["command"]
    params = p.get("parameters") or {}
    if name == "set_pump":
        pump = _number_parameter(params, "pump_id", "parameters.pump_id", integer=True)
        _integer(pump, "parameters.pump_id", 0, 2**32 - 1)
        state = _string_parameter(params, "state", "parameters.state")
        _one_of(state, PUMP_STATES, "parameters.state")
        if params.get("duration") is not None:
            duration = _number_parameter(params, "duration", "parameters.duration", integer=True)
            _integer(duration, "parameters.duration", 0, 2**32 - 1)
    elif name == "set_ph_target":
        value = _number_parameter(params, "target_ph", "parameters.target_ph")
        _range(float(value), "parameters.target_ph", 0.0, 14.0)
    elif name == "set_chlorine_target":
        value = _number_parameter(params, "target_chlorine", "parameters.target_chlorine")
        _range(float(value), "parameters.target_chlorine", 0.0, None)
    elif name == "calibrate_sensor":
        sensor = _string_parameter(params, "sensor_type", "parameters.sensor_type")
        _sensor(sensor, "parameters.sensor_type")
        value = _number_parameter(params, "value", "parameters.value")
        _range(float(value), "parameters.value", None, None)
    elif name not in ("reboot", "reset_config"):
        _text(name, UNKNOWN_COMMAND_MAX, "command")
    _timestamp(p["timestamp"], "timestamp")
    if refuse_unknown and name not in COMMANDS:
        raise Invalid("unknown_command", f"{name!r} is not a command of the protocol", "command")


def _response(p: dict) -> None:
    _id(p["command_id"], "command_id", "command")
    if p.get("error") is not None:
        _text(p["error"], ERROR_MAX, "error")
    _timestamp(p["timestamp"], "timestamp")


def _status(p: dict) -> None:
    _one_of(p["status"], DEVICE_STATES, "status")
    if p.get("battery") is not None:
        _integer(p["battery"], "battery", 0, 100)
    if p.get("signal_strength") is not None:
        _integer(p["signal_strength"], "signal_strength", -128, 0)
    _text(p["firmware_version"], FIRMWARE_VERSION_MAX, "firmware_version")
    _timestamp(p["timestamp"], "timestamp")


def _per_sensor(entries: dict, path: str, read: Callable[[dict, str], None]) -> None:
    for key in sorted(entries, key=_utf8_key):
        if key not in KNOWN_SENSORS:
            raise Invalid("not_one_of", f"expected one of {', '.join(KNOWN_SENSORS)}", path)
        read(entries[key], f"{path}.{key}")


def _calibration(entry: dict, path: str) -> None:
    if entry.get("offset") is not None:
        _range(float(entry["offset"]), f"{path}.offset", None, None)
    if entry.get("scale") is not None:
        _range(float(entry["scale"]), f"{path}.scale", 0.0, None, above=True)


def _threshold(entry: dict, path: str) -> None:
    lo = entry.get("min")
    hi = entry.get("max")
    if lo is not None:
        _range(float(lo), f"{path}.min", None, None)
    if hi is not None:
        _range(float(hi), f"{path}.max", None, None)
    if lo is not None and hi is not None and float(lo) > float(hi):
        raise Invalid("inconsistent", f"min {lo} is above max {hi}", path)


def _config(p: dict, topic: Topic) -> None:
    _device_of(p["device_id"], topic)
    c = p["config"]
    if c.get("telemetry_interval") is not None:
        _integer(c["telemetry_interval"], "config.telemetry_interval", 100, 86_400_000)
    if c.get("mqtt_keepalive") is not None:
        _integer(c["mqtt_keepalive"], "config.mqtt_keepalive", 1, 65_535)
    if c.get("sensor_calibration") is not None:
        _per_sensor(c["sensor_calibration"], "config.sensor_calibration", _calibration)
    if c.get("alert_thresholds") is not None:
        _per_sensor(c["alert_thresholds"], "config.alert_thresholds", _threshold)
    _timestamp(p["timestamp"], "timestamp")


def _alert(p: dict) -> None:
    _one_of(p["severity"], SEVERITIES, "severity")
    _text(p["message"], ALERT_MESSAGE_MAX, "message")
    if p.get("sensor") is not None:
        _sensor(p["sensor"], "sensor")
    if p.get("value") is not None:
        _range(float(p["value"]), "value", None, None)
    if p.get("threshold") is not None:
        _range(float(p["threshold"]), "threshold", None, None)
    _timestamp(p["timestamp"], "timestamp")


def validate(topic: str, payload: bytes, refuse_unknown_commands: bool = True) -> Tuple[Topic, Any]:
    """Judges one message as `dese validate` does: the topic, the size and nesting, JSON, the
    shape, every field rule and the tenant check. Returns the topic and the parsed payload;
    raises `Invalid` with the reason and the field path otherwise. A command the protocol does
    not list is refused (`unknown_command`) unless `refuse_unknown_commands` is false, as a
    device decodes it."""
    parsed = parse_topic(topic)
    return parsed, validate_message(parsed, payload, refuse_unknown_commands)


def validate_message(parsed: Topic, payload: bytes, refuse_unknown_commands: bool = True) -> Any:
    """`validate` for a topic already parsed; returns the parsed payload."""
    if not payload:
        raise Invalid("empty", "payload is empty")
    if len(payload) > MAX_PAYLOAD:
        raise Invalid("too_large", f"payload is {len(payload)} bytes, expected at most {MAX_PAYLOAD}")
    if nesting_exceeds(payload, MAX_DEPTH):
        raise Invalid("too_deep", f"payload nests deeper than {MAX_DEPTH} levels")
    value = parse_json(payload)
    shape = SHAPES[parsed.kind]
    # Rust reads the message's fields first; only when that fails does it parse the whole
    # payload generically, which refuses a number too large for a double anywhere.
    try:
        _walk(value, ("obj", shape), "")
        if _struct_duplicates(value, shape):
            raise Invalid("other", "a field of the message is given more than once", "")
        if _reads_overflow(value, shape):
            raise Invalid("syntax", "payload is not JSON: a number out of range")
    except Invalid:
        if _any_overflow(value):
            raise Invalid("syntax", "payload is not JSON: a number out of range")
        raise
    kind = parsed.kind
    if kind == "telemetry":
        _telemetry(value, parsed)
    elif kind == "commands":
        _command(value, parsed, refuse_unknown_commands)
    elif kind == "command_response":
        _response(value)
    elif kind == "status":
        _status(value)
    elif kind == "config":
        _config(value, parsed)
    else:
        _alert(value)
    return value
