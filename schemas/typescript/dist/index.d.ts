export { Invalid, KINDS, idProblem, parseTopic, timestampProblem, validate, validateMessage } from "./rules.js";
export type { Kind, Options, Topic } from "./rules.js";
export { JsonNumber, JsonObject, parse, plain } from "./json.js";
export type { Json } from "./json.js";
/** The JSON Schema of a message kind (`telemetry`, ..., `alert`) or of a command's parameters
 * (`parameters/set_pump`), as shipped with the package. */
export declare function schema(name: string): unknown;
/** The AsyncAPI 3.0 document of the protocol. */
export declare function asyncapi(): unknown;
