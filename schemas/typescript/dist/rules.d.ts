import { JsonObject } from "./json.js";
export declare const MAX_PAYLOAD: number;
export declare const MAX_DEPTH = 16;
export declare const KINDS: readonly ["telemetry", "commands", "command_response", "status", "config", "alert"];
export type Kind = (typeof KINDS)[number];
export declare const ID_MAX: {
    readonly organization: 64;
    readonly device: 64;
    readonly command: 128;
};
export declare const KNOWN_SENSORS: string[];
export declare const COMMANDS: string[];
/** A refused message: `reason` is the Rust SDK's label (`out_of_range`, `tenant_mismatch`,
 * ...), `path` the dotted field path (`""` for the whole payload, `null` when the problem is
 * not in a field: the topic, the size, the syntax). */
export declare class Invalid extends Error {
    readonly reason: string;
    readonly detail: string;
    readonly path: string | null;
    constructor(reason: string, detail: string, path?: string | null);
}
/** `devices/{org}/{device}/{kind}`, checked. */
export interface Topic {
    org: string;
    device: string;
    kind: Kind;
}
/** What is wrong with an id, or null: not empty, at most `max` UTF-8 bytes, no leading `$`,
 * no `/`, `+`, `#`, and no control character (C0, DEL, C1). */
export declare function idProblem(value: string, max: number): string | null;
export declare function parseTopic(topic: string): Topic;
/** Whether objects and arrays nest deeper than `limit`, ignoring brackets inside strings. */
export declare function nestingExceeds(payload: Uint8Array, limit: number): boolean;
/** What is wrong with a timestamp, or null: ISO 8601 in UTC (`Z`, or an offset of zero), at
 * most nine fraction digits, a real date and time (no leap second). */
export declare function timestampProblem(value: string): string | null;
export interface Options {
    /** Refuse a command the protocol does not list (`unknown_command`), as a validator judges
     * it; default true. False decodes it as a device does, to answer it with an error. */
    refuseUnknownCommands?: boolean;
}
/** Judges one message as `dese validate` does: the topic, the size and nesting, JSON, the
 * shape, every field rule and the tenant check. Returns the topic and the parsed payload;
 * throws `Invalid` with the reason and the field path otherwise. */
export declare function validate(topic: string, payload: Uint8Array, options?: Options): {
    topic: Topic;
    message: JsonObject;
};
/** `validate` for a topic already parsed; returns the parsed payload. */
export declare function validateMessage(parsed: Topic, payload: Uint8Array, options?: Options): JsonObject;
