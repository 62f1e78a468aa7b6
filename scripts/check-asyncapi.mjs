// Parses schemas/asyncapi.json with the official AsyncAPI parser and fails on any error.
// Run by scripts/check-schemas with the parser installed in a cache folder:
//     node scripts/check-asyncapi.mjs <path to node_modules> <asyncapi.json>
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";

const [modules, file] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(modules), "noop.js"));
const { Parser } = require("@asyncapi/parser");

const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"), { source: path.resolve(file) });
const errors = diagnostics.filter((d) => d.severity === 0);
const warnings = diagnostics.filter((d) => d.severity === 1);
for (const d of [...errors, ...warnings]) {
  console.log(`${d.severity === 0 ? "error" : "warning"}: ${d.message} at ${d.path.join(".")}`);
}
if (!document || errors.length > 0) {
  console.log(`asyncapi: ${errors.length} error(s), the document is not valid AsyncAPI`);
  process.exit(1);
}
console.log(
  `asyncapi: valid AsyncAPI ${document.version()}: ${document.channels().length} channels, ` +
    `${document.operations().length} operations, ${document.messages().length} messages, ` +
    `${warnings.length} warning(s)`,
);
