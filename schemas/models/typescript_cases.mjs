// Writes a TypeScript file that assigns every valid test vector to its generated type, and a few
// mistakes marked @ts-expect-error: with `tsc --noEmit` it proves the types accept every valid
// payload and are not `any`.
//
//   node typescript_cases.mjs VECTORS_DIR > cases.ts
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const types = {
  telemetry: "DESETelemetry",
  commands: "DESECommands",
  command_response: "DESECommandResponse",
  status: "DESEStatus",
  config: "DESEConfig",
  alert: "DESEAlert",
};
const dir = process.argv[2];
const lines = [];
for (const [kind, type] of Object.entries(types)) lines.push(`import type { ${type} } from "./${kind}";`);
let n = 0;
for (const file of readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
  for (const v of JSON.parse(readFileSync(join(dir, file), "utf8")).vectors) {
    const kind = v.topic.split("/").pop();
    if (!v.valid || !("payload" in v) || !(kind in types)) continue;
    lines.push(`// ${file}: ${v.name}`);
    lines.push(`export const valid${n++}: ${types[kind]} = ${JSON.stringify(v.payload)};`);
  }
}
lines.push(`
const base = { command_id: "c-1", device_id: "d-1", timestamp: "2025-01-27T10:00:00Z" };
// @ts-expect-error: set_pump needs its pump
export const noPump: DESECommands = { ...base, command: "set_pump", parameters: { state: "on" } };
// @ts-expect-error: a pump state is on or off
export const badState: DESECommands = { ...base, command: "set_pump", parameters: { pump_id: 1, state: "up" } };
// @ts-expect-error: set_ph_target's parameter is target_ph
export const wrongParameter: DESECommands = { ...base, command: "set_ph_target", parameters: { target_chlorine: 1 } };
// @ts-expect-error: not a command of the protocol
export const dance: DESECommands = { ...base, command: "dance" };
// @ts-expect-error: a pH is a number
export const textPh: DESETelemetry["sensors"]["ph"] = "7.2";
// @ts-expect-error: statuses are online, offline, error, maintenance
export const asleep: DESEStatus["status"] = "asleep";
// Narrowing on the command's name types its parameters.
export function pumpOf(command: DESECommands): number | undefined {
  if (command.command === "set_pump") {
    const id: number = command.parameters.pump_id;
    return id;
  }
  return undefined;
}
`);
console.log(lines.join("\n"));
