// Runs the installed `dese-schemas` package on cases judged by the Rust SDK and reports every
// case whose verdict, reason or path differs: the test vectors, and any file of generated
// cases given on the command line (`cargo xtask near-valid` writes them).
//
//   node agreement.mjs VECTORS_DIR [CASES.json ...]
//
// Exit status 0 when all agree, 1 otherwise.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

import { Invalid, validate } from "dese-schemas";

const encoder = new TextEncoder();
const payloadBytes = (c) => encoder.encode("payload_text" in c ? c.payload_text : JSON.stringify(c.payload));

function judge(c) {
  try {
    validate(c.topic, payloadBytes(c));
    return [true, null, null];
  } catch (e) {
    if (!(e instanceof Invalid)) throw e;
    return [false, e.reason, e.path];
  }
}

const expected = (c) => (c.valid ? [true, null, null] : [false, c.reason, c.path ?? null]);

const [vectors, ...extra] = process.argv.slice(2);
const sets = readdirSync(vectors)
  .filter((f) => f.endsWith(".json"))
  .sort()
  .map((f) => [f, JSON.parse(readFileSync(join(vectors, f), "utf8")).vectors]);
for (const file of extra) sets.push([file, JSON.parse(readFileSync(file, "utf8"))]);
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
        console.log(`DIFFERS ${name} / ${c.name ?? c.topic}: Rust ${JSON.stringify(want)}, TypeScript ${JSON.stringify(got)}`);
        if ("payload_text" in c) console.log(`    payload: ${JSON.stringify(c.payload_text.slice(0, 300))}`);
      }
    }
  }
}
console.log(`typescript dese-schemas: ${total - failed} of ${total} cases agree with Rust`);
process.exitCode = failed ? 1 : 0;
