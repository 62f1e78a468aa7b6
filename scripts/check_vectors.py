#!/usr/bin/env python3
"""Validates every test vector against the committed JSON Schemas with Python's `jsonschema`,
the proof that the schemas work outside Rust.

The verdicts must agree with the vectors', except for the rules a JSON Schema cannot state
(docs/other-languages.md lists them), where the schema must accept what the Rust decoder
refuses. Topics are not judged by the schemas; payloads that are not JSON are skipped.

    scripts/check-schemas            # installs jsonschema in a virtual environment, runs this
"""
import json
import pathlib
import sys

from jsonschema import Draft202012Validator, FormatChecker

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
KINDS = ["telemetry", "commands", "command_response", "status", "config", "alert"]
OUTSIDE_SCHEMAS = {"tenant_mismatch", "inconsistent", "other", "too_deep", "too_large", "topic"}


def main():
    checker = FormatChecker()
    if "date-time" not in checker.checkers:
        sys.exit("the date-time format check is missing: pip install rfc3339-validator")
    validators = {}
    for kind in KINDS:
        schema = json.loads((SCHEMAS / "json" / f"{kind}.schema.json").read_text())
        Draft202012Validator.check_schema(schema)
        validators[kind] = Draft202012Validator(schema, format_checker=checker)
    for path in sorted((SCHEMAS / "json" / "parameters").glob("*.json")):
        Draft202012Validator.check_schema(json.loads(path.read_text()))

    passed, failed, skipped = 0, 0, 0
    for path in sorted((SCHEMAS / "vectors").glob("*.json")):
        for vector in json.loads(path.read_text())["vectors"]:
            kind = vector["topic"].rsplit("/", 1)[-1]
            if "payload" not in vector or kind not in validators:
                skipped += 1
                continue
            errors = [e.message for e in validators[kind].iter_errors(vector["payload"])]
            outside = vector.get("reason") in OUTSIDE_SCHEMAS
            expected = vector["valid"] or outside
            if (not errors) == expected:
                passed += 1
            else:
                failed += 1
                verdict = "accepts" if not errors else f"refuses ({'; '.join(errors)})"
                print(f"FAIL {path.name} / {vector['name']}: the vector says "
                      f"{'valid' if vector['valid'] else vector['reason']}, the schema {verdict}")
    print(f"python jsonschema: {passed} passed, {failed} failed, {skipped} skipped")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
