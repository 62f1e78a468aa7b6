// Runs the installed `dese-schemas` package on cases judged by the Rust SDK and reports every
// case whose verdict, reason or path differs: the test vectors, and any file of generated
// cases given on the command line (`cargo xtask near-valid` writes them).
//
//   node agreement.mjs VECTORS_DIR [CASES.json ...]
//
// Exit status 0 when all agree, 1 otherwise.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

import { Invalid, JsonNumber, JsonObject, parse, validate } from "dese-schemas";

const encoder = new TextEncoder();

// A vector's `payload` as the bytes the Rust SDK judged (`serde_json`'s text of it). The file
// is read with the package's parser, since JSON.parse would turn `650.0` into `650` and round
// a 64-bit integer: a float with no fraction keeps its `.0`, an integer its exact digits.
function text(value) {
  if (value instanceof JsonNumber) {
    if (value.integer !== undefined) return value.integer.toString();
    return Number.isInteger(value.value) && Math.abs(value.value) < 1e16 ? `${value.value}.0` : String(value.value);
  }
  if (value instanceof JsonObject) return `{${value.keys().map((k) => `${JSON.stringify(k)}:${text(value.get(k))}`).join(",")}}`;
  if (Array.isArray(value)) return `[${value.map(text).join(",")}]`;
  return JSON.stringify(value);
}

const payloadBytes = (c) => encoder.encode(c.has("payload_text") ? c.get("payload_text") : text(c.get("payload")));
const field = (c, key) => {
  const value = c.get(key);
  return value instanceof JsonNumber ? value.value : value ?? null;
};

function judge(c) {
  try {
    validate(field(c, "topic"), payloadBytes(c));
    return [true, null, null];
  } catch (e) {
    if (!(e instanceof Invalid)) throw e;
    return [false, e.reason, e.path];
  }
}

const expected = (c) => (field(c, "valid") ? [true, null, null] : [false, field(c, "reason"), field(c, "path")]);

const read = (file) => parse(readFileSync(file, "utf8"));
const [vectors, ...extra] = process.argv.slice(2);
const sets = readdirSync(vectors)
  .filter((f) => f.endsWith(".json"))
  .sort()
  .map((f) => [f, read(join(vectors, f)).get("vectors")]);
for (const file of extra) sets.push([file, read(file)]);
let total = 0;
let failed = 0;
for (const [name, cases] of sets) {
  for (const c of cases) {
    total++;
    const got = judge(c);
    const want = expected(c);
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      failed++;
      if (failed <= 40) {
        console.log(`DIFFERS ${name} / ${field(c, "name") ?? field(c, "topic")}: Rust ${JSON.stringify(want)}, TypeScript ${JSON.stringify(got)}`);
        console.log(`    payload: ${JSON.stringify(new TextDecoder().decode(payloadBytes(c)).slice(0, 300))}`);
      }
    }
  }
}
console.log(`typescript dese-schemas: ${total - failed} of ${total} cases agree with Rust`);
process.exitCode = failed ? 1 : 0;
