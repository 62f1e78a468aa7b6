// The DESE IoT protocol in TypeScript: the JSON Schemas as package data, and a validator that
// applies every rule of the protocol, those outside the schemas included, with the verdict,
// the reason label and the field path of the Rust SDK (`dese-protocol`).

import { readFileSync } from "node:fs";

export { Invalid, KINDS, idProblem, parseTopic, timestampProblem, validate, validateMessage } from "./rules.js";
export type { Kind, Options, Topic } from "./rules.js";
export { JsonNumber, JsonObject, parse, plain } from "./json.js";
export type { Json } from "./json.js";

/** The JSON Schema of a message kind (`telemetry`, ..., `alert`) or of a command's parameters
 * (`parameters/set_pump`), as shipped with the package. */
export function schema(name: string): unknown {
  const url = new URL(`../schemas/json/${name}.schema.json`, import.meta.url);
  return JSON.parse(readFileSync(url, "utf8"));
}

/** The AsyncAPI 3.0 document of the protocol. */
export function asyncapi(): unknown {
  return JSON.parse(readFileSync(new URL("../schemas/asyncapi.json", import.meta.url), "utf8"));
}
