/** A JSON number: its double, and its exact value when it is an integer of at most 64 bits. */
export declare class JsonNumber {
    readonly value: number;
    /** The exact integer, when the literal is one (no fraction, no exponent) within 64 bits. */
    readonly integer: bigint | undefined;
    /** A literal too large for a double (`1e400`). */
    readonly overflow: boolean;
    constructor(value: number, 
    /** The exact integer, when the literal is one (no fraction, no exponent) within 64 bits. */
    integer: bigint | undefined, 
    /** A literal too large for a double (`1e400`). */
    overflow: boolean);
}
/** A JSON object: its entries (the last of a repeated key wins) and the keys given twice. */
export declare class JsonObject {
    readonly entries: Map<string, Json>;
    readonly duplicates: Set<string>;
    get(key: string): Json | undefined;
    has(key: string): boolean;
    keys(): string[];
}
export type Json = null | boolean | string | JsonNumber | Json[] | JsonObject;
export declare class JsonSyntaxError extends Error {
}
/** Parses `text` as one JSON value, as strictly as RFC 8259 (and serde_json) read it. */
export declare function parse(text: string): Json;
/** Back to plain JavaScript values, for printing. */
export declare function plain(value: Json): unknown;
