// Every rule of the DESE IoT protocol, judged in the order the Rust SDK (`dese-protocol`)
// judges them, so that a payload gets the same verdict, reason and field path in TypeScript as
// in Rust: the topic; the payload's size and nesting, before parsing; JSON syntax; the shape of
// the message (each field's presence and JSON type, in the order of its fields); a protocol
// field given twice; then each field's value, in the order the Rust decoder reads them.

import { Json, JsonNumber, JsonObject, JsonSyntaxError, parse } from "./json.js";

export const MAX_PAYLOAD = 16 * 1024;
export const MAX_DEPTH = 16;
export const KINDS = ["telemetry", "commands", "command_response", "status", "config", "alert"] as const;
export type Kind = (typeof KINDS)[number];
const MAX_TOPIC_LEN = "devices".length + 3 + 2 * 64 + "command_response".length;
export const ID_MAX = { organization: 64, device: 64, command: 128 } as const;
type IdKind = keyof typeof ID_MAX;
const FIRMWARE_VERSION_MAX = 64;
const ALERT_MESSAGE_MAX = 512;
const ERROR_MAX = 512;
const UNKNOWN_COMMAND_MAX = 64;
const SENSOR_NAME_MAX = 32;
const SENSOR_NAME = new RegExp(`^[A-Za-z0-9_-]{1,${SENSOR_NAME_MAX}}$`);
export const KNOWN_SENSORS = ["ph", "chlorine", "temperature", "orp", "tds", "flow_rate"];
export const COMMANDS = ["set_pump", "set_ph_target", "set_chlorine_target", "reboot", "reset_config", "calibrate_sensor"];
const DEVICE_STATES = ["online", "offline", "error", "maintenance"];
const SEVERITIES = ["info", "warning", "critical"];
const PUMP_STATES = ["on", "off"];
const I64_MAX = 2n ** 63n - 1n;
const encoder = new TextEncoder();
const bytes = (s: string) => encoder.encode(s).length;

/** A refused message: `reason` is the Rust SDK's label (`out_of_range`, `tenant_mismatch`,
 * ...), `path` the dotted field path (`""` for the whole payload, `null` when the problem is
 * not in a field: the topic, the size, the syntax). */
export class Invalid extends Error {
  constructor(
    readonly reason: string,
    readonly detail: string,
    readonly path: string | null = null,
  ) {
    super(path ? `${path}: ${detail}` : detail);
  }
}

/** `devices/{org}/{device}/{kind}`, checked. */
export interface Topic {
  org: string;
  device: string;
  kind: Kind;
}

/** What is wrong with an id, or null: not empty, at most `max` UTF-8 bytes, no leading `$`,
 * no `/`, `+`, `#`, and no control character (C0, DEL, C1). */
export function idProblem(value: string, max: number): string | null {
  const size = bytes(value);
  if (size === 0) return "is empty";
  if (size > max) return `is ${size} bytes long, expected at most ${max}`;
  if (value.startsWith("$")) return "starts with '$'";
  for (const ch of value) {
    const code = ch.codePointAt(0) ?? 0;
    if ("/+#".includes(ch) || code < 0x20 || code === 0x7f || (code >= 0x80 && code <= 0x9f)) {
      return `contains the forbidden character ${JSON.stringify(ch)}`;
    }
  }
  return null;
}

export function parseTopic(topic: string): Topic {
  if (bytes(topic) > MAX_TOPIC_LEN) throw new Invalid("topic", `topic is longer than ${MAX_TOPIC_LEN} bytes`);
  const levels = topic.split("/");
  if (levels.length !== 4) throw new Invalid("topic", `topic has ${levels.length} levels, expected 4`);
  const [prefix, org, device, kind] = levels;
  if (prefix !== "devices") throw new Invalid("topic", "topic does not start with devices/");
  for (const [level, value, what] of [
    [2, org, "organization"],
    [3, device, "device"],
  ] as const) {
    const problem = idProblem(value, ID_MAX[what]);
    if (problem) throw new Invalid("topic", `topic level ${level}: ${what} id ${problem}`);
  }
  if (!(KINDS as readonly string[]).includes(kind)) {
    throw new Invalid("topic", `topic level 4: expected one of ${KINDS.join(", ")}`);
  }
  return { org, device, kind: kind as Kind };
}

/** Whether objects and arrays nest deeper than `limit`, ignoring brackets inside strings. */
export function nestingExceeds(payload: Uint8Array, limit: number): boolean {
  let depth = 0;
  for (let i = 0; i < payload.length; i++) {
    const b = payload[i];
    if (b === 0x22) {
      for (i++; i < payload.length; i++) {
        if (payload[i] === 0x5c) i++;
        else if (payload[i] === 0x22) break;
      }
    } else if (b === 0x7b || b === 0x5b) {
      if (++depth > limit) return true;
    } else if (b === 0x7d || b === 0x5d) {
      depth = Math.max(depth - 1, 0);
    }
  }
  return false;
}

function jsonType(v: Json | undefined): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "boolean") return "a boolean";
  if (v instanceof JsonNumber) return "a number";
  if (typeof v === "string") return "a string";
  if (Array.isArray(v)) return "an array";
  return "an object";
}

// The shape of each message: fields, in order, with their JSON type and presence.
type Ty = "string" | "number" | "boolean" | "object" | { obj: Field[] } | { map: Field[] };
interface Field {
  name: string;
  ty: Ty;
  required: boolean;
}
const req = (name: string, ty: Ty): Field => ({ name, ty, required: true });
const opt = (name: string, ty: Ty): Field => ({ name, ty, required: false });

const SENSORS = [req("ph", "number"), req("chlorine", "number"), req("temperature", "number"), opt("orp", "number"), opt("tds", "number"), opt("flow_rate", "number")];
const METADATA = [opt("battery", "number"), opt("signal_strength", "number"), req("firmware_version", "string")];
const CALIBRATION = [opt("offset", "number"), opt("scale", "number")];
const THRESHOLD = [opt("min", "number"), opt("max", "number")];
const DEVICE_CONFIG = [opt("telemetry_interval", "number"), opt("mqtt_keepalive", "number"), opt("sensor_calibration", { map: CALIBRATION }), opt("alert_thresholds", { map: THRESHOLD })];
const SHAPES: Record<Kind, Field[]> = {
  telemetry: [req("device_id", "string"), req("timestamp", "string"), req("organization_id", "string"), req("sensors", { obj: SENSORS }), req("metadata", { obj: METADATA })],
  commands: [req("command_id", "string"), req("device_id", "string"), req("command", "string"), opt("parameters", "object"), req("timestamp", "string")],
  command_response: [req("command_id", "string"), req("success", "boolean"), opt("response", "object"), opt("error", "string"), req("timestamp", "string")],
  status: [req("status", "string"), opt("battery", "number"), opt("signal_strength", "number"), req("firmware_version", "string"), req("timestamp", "string")],
  config: [req("device_id", "string"), req("config", { obj: DEVICE_CONFIG }), req("timestamp", "string")],
  alert: [req("severity", "string"), req("message", "string"), opt("sensor", "string"), opt("value", "number"), opt("threshold", "number"), req("timestamp", "string")],
};

const join = (prefix: string, name: string) => (prefix ? `${prefix}.${name}` : name);

/** Keys in the order Rust's maps keep them: by their UTF-8 bytes. */
function sortedKeys(obj: JsonObject): string[] {
  const key = (s: string) => Array.from(encoder.encode(s));
  return obj.keys().sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
    return x.length - y.length;
  });
}

function walk(value: Json | undefined, ty: Ty, path: string): void {
  const expected = typeof ty === "string" ? ty : "object";
  const ok =
    expected === "string" ? typeof value === "string"
    : expected === "number" ? value instanceof JsonNumber
    : expected === "boolean" ? typeof value === "boolean"
    : value instanceof JsonObject;
  if (!ok) throw new Invalid("wrong_type", `expected ${expected}, got ${jsonType(value)}`, path);
  if (typeof ty === "object" && "obj" in ty) fields(value as JsonObject, ty.obj, path);
  else if (typeof ty === "object" && "map" in ty) {
    const obj = value as JsonObject;
    for (const key of sortedKeys(obj)) walk(obj.get(key), { obj: ty.map }, join(path, key));
  }
}

function fields(obj: JsonObject, list: Field[], path: string): void {
  for (const field of list) {
    const here = join(path, field.name);
    if (!obj.has(field.name)) {
      if (field.required) throw new Invalid("missing_field", "missing required field", here);
      continue;
    }
    const value = obj.get(field.name) ?? null;
    if (value === null && !field.required) continue;
    walk(value, field.ty, here);
  }
}

function structDuplicates(value: Json | undefined, list: Field[]): boolean {
  if (!(value instanceof JsonObject)) return false;
  if (list.some((f) => value.duplicates.has(f.name))) return true;
  for (const field of list) {
    const inner = value.get(field.name);
    if (typeof field.ty === "object" && "obj" in field.ty && structDuplicates(inner, field.ty.obj)) return true;
    if (typeof field.ty === "object" && "map" in field.ty && inner instanceof JsonObject) {
      const map = field.ty.map;
      if (inner.keys().some((k) => structDuplicates(inner.get(k), map))) return true;
    }
  }
  return false;
}

function anyOverflow(value: Json | undefined): boolean {
  if (value instanceof JsonNumber) return value.overflow;
  if (value instanceof JsonObject) return value.keys().some((k) => anyOverflow(value.get(k)));
  if (Array.isArray(value)) return value.some(anyOverflow);
  return false;
}

/** Whether a number too large for a double is where the message's fields are read (its own
 * fields, and everything inside `parameters` and `response`). */
function readsOverflow(value: Json | undefined, list: Field[]): boolean {
  if (!(value instanceof JsonObject)) return false;
  for (const field of list) {
    const inner = value.get(field.name);
    if (typeof field.ty === "object" && "obj" in field.ty) {
      if (readsOverflow(inner, field.ty.obj)) return true;
    } else if (typeof field.ty === "object" && "map" in field.ty) {
      const map = field.ty.map;
      if (inner instanceof JsonObject && inner.keys().some((k) => readsOverflow(inner.get(k), map))) return true;
    } else if (anyOverflow(inner)) {
      return true;
    }
  }
  return false;
}

// Values.

function id(value: string, path: string, kind: IdKind): void {
  const problem = idProblem(value, ID_MAX[kind]);
  if (problem) throw new Invalid("bad_id", `${kind} id ${problem}`, path);
}

function tenant(payload: string, topic: string, path: string): void {
  if (payload !== topic) throw new Invalid("tenant_mismatch", `${JSON.stringify(payload)} is not the topic's ${JSON.stringify(topic)}`, path);
}

function deviceOf(value: string, topic: Topic): void {
  id(value, "device_id", "device");
  tenant(value, topic.device, "device_id");
}

const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|([+-])(\d{2}):(\d{2}))$/;

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** What is wrong with a timestamp, or null: ISO 8601 in UTC (`Z`, or an offset of zero), at
 * most nine fraction digits, a real date and time (no leap second). */
export function timestampProblem(value: string): string | null {
  const m = TIMESTAMP.exec(value);
  if (!m) return "expected an ISO 8601 timestamp such as 2025-01-27T10:00:00Z";
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  if (m[9] && (Number(m[10]) || Number(m[11]))) return "is not in UTC";
  if (month < 1 || month > 12) return `month ${month} does not exist`;
  if (day < 1 || day > daysInMonth(year, month)) return `day ${day} does not exist`;
  if (hour > 23 || minute > 59 || second > 59) return "the time of day does not exist";
  return null;
}

function timestamp(value: string, path: string): void {
  const problem = timestampProblem(value);
  if (problem) throw new Invalid("bad_timestamp", problem, path);
}

function text(value: string, max: number, path: string): void {
  const size = bytes(value);
  if (size === 0 || size > max) throw new Invalid("bad_text", `is ${size} bytes, expected 1 to ${max}`, path);
}

function oneOf(value: string, names: string[], path: string): void {
  if (!names.includes(value)) throw new Invalid("not_one_of", `expected one of ${names.join(", ")}`, path);
}

function sensor(value: string, path: string): void {
  if (KNOWN_SENSORS.includes(value)) return;
  if (!SENSOR_NAME.test(value)) {
    throw new Invalid("bad_text", `expected 1 to ${SENSOR_NAME_MAX} ASCII letters, digits, '_' or '-'`, path);
  }
}

function range(n: JsonNumber, path: string, lo: number | null, hi: number | null, above = false): void {
  const v = n.value;
  if (!Number.isFinite(v)) throw new Invalid("out_of_range", "expected a finite number", path);
  const bad = (lo !== null && (above ? v <= lo : v < lo)) || (hi !== null && v > hi);
  if (bad) throw new Invalid("out_of_range", `${v} is out of range`, path);
}

/** An integer field: a number with a zero fraction (`650.0`) counts as an integer. */
function integer(n: JsonNumber, path: string, lo: bigint, hi: bigint): void {
  let value: bigint;
  if (n.integer !== undefined) {
    if (n.integer > I64_MAX) throw new Invalid("out_of_range", `${n.integer} is out of range`, path);
    value = n.integer;
  } else {
    const f = n.value;
    if (!(f >= -9.2e18 && f <= 9.2e18)) throw new Invalid("out_of_range", `${f} is out of range`, path);
    if (Math.trunc(f) !== f) throw new Invalid("wrong_type", `expected an integer, got ${f}`, path);
    value = BigInt(f);
  }
  if (value < lo || value > hi) throw new Invalid("out_of_range", `${value} is out of range, expected ${lo} to ${hi}`, path);
}

const num = (o: JsonObject, key: string) => o.get(key) as JsonNumber;
const str = (o: JsonObject, key: string) => o.get(key) as string;
const present = (o: JsonObject, key: string) => o.has(key) && o.get(key) !== null;

function telemetryRules(p: JsonObject, topic: Topic): void {
  deviceOf(str(p, "device_id"), topic);
  timestamp(str(p, "timestamp"), "timestamp");
  id(str(p, "organization_id"), "organization_id", "organization");
  tenant(str(p, "organization_id"), topic.org, "organization_id");
  const s = p.get("sensors") as JsonObject;
  range(num(s, "ph"), "sensors.ph", 0, 14);
  range(num(s, "chlorine"), "sensors.chlorine", 0, null);
  range(num(s, "temperature"), "sensors.temperature", -273.15, null);
  if (present(s, "orp")) integer(num(s, "orp"), "sensors.orp", -(2n ** 31n), 2n ** 31n - 1n);
  if (present(s, "tds")) integer(num(s, "tds"), "sensors.tds", 0n, 2n ** 32n - 1n);
  if (present(s, "flow_rate")) range(num(s, "flow_rate"), "sensors.flow_rate", 0, null);
  const m = p.get("metadata") as JsonObject;
  if (present(m, "battery")) integer(num(m, "battery"), "metadata.battery", 0n, 100n);
  if (present(m, "signal_strength")) integer(num(m, "signal_strength"), "metadata.signal_strength", -128n, 0n);
  text(str(m, "firmware_version"), FIRMWARE_VERSION_MAX, "metadata.firmware_version");
}

function parameter(params: JsonObject, key: string, path: string): Json {
  if (!params.has(key)) throw new Invalid("missing_field", "missing required field", path);
  return params.get(key) ?? null;
}

function numberParameter(params: JsonObject, key: string, path: string, isInteger = false): JsonNumber {
  const value = parameter(params, key, path);
  if (!(value instanceof JsonNumber)) throw new Invalid("wrong_type", `expected ${isInteger ? "an integer" : "a number"}, got ${jsonType(value)}`, path);
  return value;
}

function stringParameter(params: JsonObject, key: string, path: string): string {
  const value = parameter(params, key, path);
  if (typeof value !== "string") throw new Invalid("wrong_type", `expected a string, got ${jsonType(value)}`, path);
  return value;
}

function commandRules(p: JsonObject, topic: Topic, refuseUnknown: boolean): void {
  id(str(p, "command_id"), "command_id", "command");
  deviceOf(str(p, "device_id"), topic);
  const name = str(p, "command");
  const params = present(p, "parameters") ? (p.get("parameters") as JsonObject) : new JsonObject();
  if (name === "set_pump") {
    integer(numberParameter(params, "pump_id", "parameters.pump_id", true), "parameters.pump_id", 0n, 2n ** 32n - 1n);
    oneOf(stringParameter(params, "state", "parameters.state"), PUMP_STATES, "parameters.state");
    if (present(params, "duration")) {
      const duration = params.get("duration");
      if (!(duration instanceof JsonNumber)) throw new Invalid("wrong_type", `expected an integer, got ${jsonType(duration)}`, "parameters.duration");
      integer(duration, "parameters.duration", 0n, 2n ** 32n - 1n);
    }
  } else if (name === "set_ph_target") {
    range(numberParameter(params, "target_ph", "parameters.target_ph"), "parameters.target_ph", 0, 14);
  } else if (name === "set_chlorine_target") {
    range(numberParameter(params, "target_chlorine", "parameters.target_chlorine"), "parameters.target_chlorine", 0, null);
  } else if (name === "calibrate_sensor") {
    sensor(stringParameter(params, "sensor_type", "parameters.sensor_type"), "parameters.sensor_type");
    range(numberParameter(params, "value", "parameters.value"), "parameters.value", null, null);
  } else if (name !== "reboot" && name !== "reset_config") {
    text(name, UNKNOWN_COMMAND_MAX, "command");
  }
  timestamp(str(p, "timestamp"), "timestamp");
  if (refuseUnknown && !COMMANDS.includes(name)) throw new Invalid("unknown_command", `${JSON.stringify(name)} is not a command of the protocol`, "command");
}

function responseRules(p: JsonObject): void {
  id(str(p, "command_id"), "command_id", "command");
  if (present(p, "error")) text(str(p, "error"), ERROR_MAX, "error");
  timestamp(str(p, "timestamp"), "timestamp");
}

function statusRules(p: JsonObject): void {
  oneOf(str(p, "status"), DEVICE_STATES, "status");
  if (present(p, "battery")) integer(num(p, "battery"), "battery", 0n, 100n);
  if (present(p, "signal_strength")) integer(num(p, "signal_strength"), "signal_strength", -128n, 0n);
  text(str(p, "firmware_version"), FIRMWARE_VERSION_MAX, "firmware_version");
  timestamp(str(p, "timestamp"), "timestamp");
}

function perSensor(entries: JsonObject, path: string, read: (entry: JsonObject, path: string) => void): void {
  for (const key of sortedKeys(entries)) {
    if (!KNOWN_SENSORS.includes(key)) throw new Invalid("not_one_of", `expected one of ${KNOWN_SENSORS.join(", ")}`, path);
    read(entries.get(key) as JsonObject, `${path}.${key}`);
  }
}

function calibration(entry: JsonObject, path: string): void {
  if (present(entry, "offset")) range(num(entry, "offset"), `${path}.offset`, null, null);
  if (present(entry, "scale")) range(num(entry, "scale"), `${path}.scale`, 0, null, true);
}

function threshold(entry: JsonObject, path: string): void {
  const lo = present(entry, "min") ? num(entry, "min") : null;
  const hi = present(entry, "max") ? num(entry, "max") : null;
  if (lo) range(lo, `${path}.min`, null, null);
  if (hi) range(hi, `${path}.max`, null, null);
  if (lo && hi && lo.value > hi.value) throw new Invalid("inconsistent", `min ${lo.value} is above max ${hi.value}`, path);
}

function configRules(p: JsonObject, topic: Topic): void {
  deviceOf(str(p, "device_id"), topic);
  const c = p.get("config") as JsonObject;
  if (present(c, "telemetry_interval")) integer(num(c, "telemetry_interval"), "config.telemetry_interval", 100n, 86_400_000n);
  if (present(c, "mqtt_keepalive")) integer(num(c, "mqtt_keepalive"), "config.mqtt_keepalive", 1n, 65_535n);
  if (present(c, "sensor_calibration")) perSensor(c.get("sensor_calibration") as JsonObject, "config.sensor_calibration", calibration);
  if (present(c, "alert_thresholds")) perSensor(c.get("alert_thresholds") as JsonObject, "config.alert_thresholds", threshold);
  timestamp(str(p, "timestamp"), "timestamp");
}

function alertRules(p: JsonObject): void {
  oneOf(str(p, "severity"), SEVERITIES, "severity");
  text(str(p, "message"), ALERT_MESSAGE_MAX, "message");
  if (present(p, "sensor")) sensor(str(p, "sensor"), "sensor");
  if (present(p, "value")) range(num(p, "value"), "value", null, null);
  if (present(p, "threshold")) range(num(p, "threshold"), "threshold", null, null);
  timestamp(str(p, "timestamp"), "timestamp");
}

export interface Options {
  /** Refuse a command the protocol does not list (`unknown_command`), as a validator judges
   * it; default true. False decodes it as a device does, to answer it with an error. */
  refuseUnknownCommands?: boolean;
}

/** Judges one message as `dese validate` does: the topic, the size and nesting, JSON, the
 * shape, every field rule and the tenant check. Returns the topic and the parsed payload;
 * throws `Invalid` with the reason and the field path otherwise. */
export function validate(topic: string, payload: Uint8Array, options: Options = {}): { topic: Topic; message: JsonObject } {
  const parsed = parseTopic(topic);
  return { topic: parsed, message: validateMessage(parsed, payload, options) };
}

/** `validate` for a topic already parsed; returns the parsed payload. */
export function validateMessage(parsed: Topic, payload: Uint8Array, options: Options = {}): JsonObject {
  if (payload.length === 0) throw new Invalid("empty", "payload is empty");
  if (payload.length > MAX_PAYLOAD) throw new Invalid("too_large", `payload is ${payload.length} bytes, expected at most ${MAX_PAYLOAD}`);
  if (nestingExceeds(payload, MAX_DEPTH)) throw new Invalid("too_deep", `payload nests deeper than ${MAX_DEPTH} levels`);
  let textValue: string;
  try {
    textValue = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(payload);
  } catch {
    throw new Invalid("syntax", "payload is not UTF-8");
  }
  let value: Json;
  try {
    value = parse(textValue);
  } catch (e) {
    if (e instanceof JsonSyntaxError) throw new Invalid("syntax", `payload is not JSON: ${e.message}`);
    throw e;
  }
  const shape = SHAPES[parsed.kind];
  // Rust reads the message's fields first; only when that fails does it parse the whole
  // payload generically, which refuses a number too large for a double anywhere.
  try {
    walk(value, { obj: shape }, "");
    if (structDuplicates(value, shape)) throw new Invalid("other", "a field of the message is given more than once", "");
    if (readsOverflow(value, shape)) throw new Invalid("syntax", "payload is not JSON: a number out of range");
  } catch (e) {
    if (e instanceof Invalid && anyOverflow(value)) throw new Invalid("syntax", "payload is not JSON: a number out of range");
    throw e;
  }
  const message = value as JsonObject;
  switch (parsed.kind) {
    case "telemetry":
      telemetryRules(message, parsed);
      break;
    case "commands":
      commandRules(message, parsed, options.refuseUnknownCommands ?? true);
      break;
    case "command_response":
      responseRules(message);
      break;
    case "status":
      statusRules(message);
      break;
    case "config":
      configRules(message, parsed);
      break;
    case "alert":
      alertRules(message);
      break;
  }
  return message;
}
