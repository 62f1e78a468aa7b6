#!/usr/bin/env node
// `dese-schemas validate --topic TOPIC [FILE]`: the arguments and exit statuses of the Rust
// tool's `dese validate` (0 valid, 1 invalid, 2 usage, 5 unreadable file), so that scripts can
// swap one for the other.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { plain } from "./json.js";
import { ID_MAX, Invalid, MAX_PAYLOAD, idProblem, parseTopic, validateMessage } from "./rules.js";
import type { Kind } from "./rules.js";

const USAGE = "usage: dese-schemas validate --topic TOPIC [--json] [--org ORG]... [--uuid-orgs] [FILE]";
// 8-4-4-4-12 hex digits, either case, as the Rust SDK's check.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function direction(kind: Kind): string {
  return kind === "commands" || kind === "config" ? "backend_to_device" : "device_to_backend";
}

function usage(message: string): number {
  process.stderr.write(`${USAGE}\ndese-schemas: error: ${message}\n`);
  return 2;
}

function main(argv: string[]): number {
  if (argv[0] !== "validate") return usage("expected the subcommand validate");
  let args;
  try {
    args = parseArgs({
      args: argv.slice(1),
      allowPositionals: true,
      options: {
        topic: { type: "string", short: "t" },
        json: { type: "boolean" },
        org: { type: "string", multiple: true },
        "uuid-orgs": { type: "boolean" },
      },
    });
  } catch (e) {
    return usage((e as Error).message);
  }
  const { values, positionals } = args;
  if (values.topic === undefined) return usage("--topic is required");
  if (positionals.length > 1) return usage("at most one FILE");
  const orgs = values.org ?? [];
  for (const org of orgs) {
    const problem = idProblem(org, ID_MAX.organization);
    if (problem) return usage(`--org ${JSON.stringify(org)}: organization id ${problem}`);
  }
  let payload: Uint8Array;
  try {
    const file = positionals[0];
    payload = file === undefined || file === "-" ? readFileSync(0) : readFileSync(file);
  } catch (e) {
    process.stderr.write(`dese-schemas: cannot read the payload: ${(e as Error).message}\n`);
    return 5;
  }
  const topicText = values.topic;
  try {
    // In the order `dese validate` checks: the topic, the organizations served, UTF-8 (for a
    // payload within the size limit), the UUID rule, then the message.
    const topic = parseTopic(topicText);
    if (orgs.length > 0 && !orgs.includes(topic.org)) throw new Invalid("org_not_allowed", `organization ${topic.org} is not one of those served (--org)`);
    if (payload.length <= MAX_PAYLOAD) {
      try {
        new TextDecoder("utf-8", { fatal: true }).decode(payload);
      } catch {
        throw new Invalid("syntax", "payload is not UTF-8");
      }
    }
    if (values["uuid-orgs"] && !UUID.test(topic.org)) throw new Invalid("topic", "topic level 2: organization id is not a UUID");
    const message = validateMessage(topic, payload);
    if (values.json) {
      console.log(JSON.stringify({ valid: true, topic: topicText, kind: topic.kind, org: topic.org, device: topic.device, direction: direction(topic.kind), message: plain(message) }));
    } else {
      console.log(`valid ${topic.kind}`);
    }
    return 0;
  } catch (e) {
    if (!(e instanceof Invalid)) throw e;
    if (values.json) {
      console.log(JSON.stringify({ valid: false, topic: topicText, reason: e.reason, path: e.path, error: e.message }));
    } else {
      process.stderr.write(`invalid: ${e.message} (${e.reason})\n`);
    }
    return 1;
  }
}

process.exitCode = main(process.argv.slice(2));
