// A strict JSON parser that keeps what JSON.parse throws away and the Rust decoder looks at:
// the exact integer behind a number, a number too large for a double, and the keys an object
// gives more than once.
/** A JSON number: its double, and its exact value when it is an integer of at most 64 bits. */
export class JsonNumber {
    value;
    integer;
    overflow;
    constructor(value, 
    /** The exact integer, when the literal is one (no fraction, no exponent) within 64 bits. */
    integer, 
    /** A literal too large for a double (`1e400`). */
    overflow) {
        this.value = value;
        this.integer = integer;
        this.overflow = overflow;
    }
}
/** A JSON object: its entries (the last of a repeated key wins) and the keys given twice. */
export class JsonObject {
    entries = new Map();
    duplicates = new Set();
    get(key) {
        return this.entries.get(key);
    }
    has(key) {
        return this.entries.has(key);
    }
    keys() {
        return [...this.entries.keys()];
    }
}
export class JsonSyntaxError extends Error {
}
const I64_MIN = -(2n ** 63n);
const U64_MAX = 2n ** 64n - 1n;
/** Parses `text` as one JSON value, as strictly as RFC 8259 (and serde_json) read it. */
export function parse(text) {
    let at = 0;
    const fail = (what) => {
        throw new JsonSyntaxError(`${what} at character ${at}`);
    };
    const ws = () => {
        while (at < text.length && " \t\n\r".includes(text[at]))
            at++;
    };
    const value = (depth) => {
        if (depth > 128)
            fail("nested too deep");
        ws();
        const c = text[at];
        if (c === "{")
            return object(depth);
        if (c === "[")
            return array(depth);
        if (c === '"')
            return string();
        if (c === "-" || (c >= "0" && c <= "9"))
            return number();
        for (const [word, v] of [
            ["true", true],
            ["false", false],
            ["null", null],
        ]) {
            if (text.startsWith(word, at)) {
                at += word.length;
                return v;
            }
        }
        return fail("expected a value");
    };
    const object = (depth) => {
        const obj = new JsonObject();
        at++;
        ws();
        if (text[at] === "}") {
            at++;
            return obj;
        }
        for (;;) {
            ws();
            if (text[at] !== '"')
                fail("expected a key");
            const key = string();
            ws();
            if (text[at] !== ":")
                fail("expected ':'");
            at++;
            const v = value(depth + 1);
            if (obj.entries.has(key))
                obj.duplicates.add(key);
            obj.entries.set(key, v);
            ws();
            if (text[at] === ",") {
                at++;
                continue;
            }
            if (text[at] === "}") {
                at++;
                return obj;
            }
            fail("expected ',' or '}'");
        }
    };
    const array = (depth) => {
        const items = [];
        at++;
        ws();
        if (text[at] === "]") {
            at++;
            return items;
        }
        for (;;) {
            items.push(value(depth + 1));
            ws();
            if (text[at] === ",") {
                at++;
                continue;
            }
            if (text[at] === "]") {
                at++;
                return items;
            }
            fail("expected ',' or ']'");
        }
    };
    const string = () => {
        at++;
        let out = "";
        for (;;) {
            if (at >= text.length)
                fail("unterminated string");
            const c = text[at];
            if (c === '"') {
                at++;
                return out;
            }
            if (c < " ")
                fail("control character in a string");
            if (c === "\\") {
                const e = text[at + 1];
                const simple = {
                    '"': '"',
                    "\\": "\\",
                    "/": "/",
                    b: "\b",
                    f: "\f",
                    n: "\n",
                    r: "\r",
                    t: "\t",
                };
                if (e in simple) {
                    out += simple[e];
                    at += 2;
                    continue;
                }
                if (e === "u") {
                    const hex = text.slice(at + 2, at + 6);
                    if (!/^[0-9a-fA-F]{4}$/.test(hex))
                        fail("bad \\u escape");
                    let code = parseInt(hex, 16);
                    at += 6;
                    if (code >= 0xd800 && code <= 0xdbff) {
                        const low = text.slice(at, at + 6);
                        if (!/^\\u[dD][c-fC-F][0-9a-fA-F]{2}$/.test(low))
                            fail("lone surrogate");
                        code = 0x10000 + ((code - 0xd800) << 10) + (parseInt(low.slice(2), 16) - 0xdc00);
                        at += 6;
                    }
                    else if (code >= 0xdc00 && code <= 0xdfff) {
                        fail("lone surrogate");
                    }
                    out += String.fromCodePoint(code);
                    continue;
                }
                fail("bad escape");
            }
            out += c;
            at++;
        }
    };
    const number = () => {
        const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(at));
        if (!m)
            return fail("bad number");
        at += m[0].length;
        const literal = m[0];
        const float = Number(literal);
        if (!m[2] && !m[3]) {
            const big = BigInt(literal);
            if (big >= I64_MIN && big <= U64_MAX)
                return new JsonNumber(float, big, false);
        }
        return new JsonNumber(float, undefined, !Number.isFinite(float));
    };
    const result = value(0);
    ws();
    if (at !== text.length)
        fail("trailing characters");
    return result;
}
/** Back to plain JavaScript values, for printing. */
export function plain(value) {
    if (value instanceof JsonNumber)
        return value.value;
    if (value instanceof JsonObject) {
        const out = {};
        for (const [k, v] of value.entries)
            out[k] = plain(v);
        return out;
    }
    if (Array.isArray(value))
        return value.map(plain);
    return value;
}
