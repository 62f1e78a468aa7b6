"""`dese-schemas validate --topic TOPIC [FILE]`: the arguments and exit statuses of the Rust
tool's `dese validate` (0 valid, 1 invalid, 2 usage, 5 unreadable file), so that scripts can
swap one for the other."""

import argparse
import json
import sys
from typing import List, Optional

from .rules import ID_MAX, MAX_PAYLOAD, Invalid, id_problem, parse_topic, validate_message

READ_CAP = 64 * 1024 * 1024


class Usage(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    # argparse exits 2 on a usage error, as clap does.
    parser = argparse.ArgumentParser(prog="dese-schemas", description="DESE IoT protocol tools")
    commands = parser.add_subparsers(dest="command", required=True)
    v = commands.add_parser(
        "validate",
        help="check one message as the backend would",
        description="Check one message as the backend would: the topic, the payload (JSON, "
        "size, depth, every field, ranges) and the tenant. Exit status 0 when valid, 1 when "
        "invalid, 2 on a usage error.",
    )
    v.add_argument("--topic", "-t", required=True, help="devices/{org}/{device}/{kind}")
    v.add_argument("file", nargs="?", metavar="FILE", help="the payload; '-' or absent: stdin")
    v.add_argument("--json", action="store_true", help="print a JSON verdict on stdout")
    v.add_argument(
        "--org",
        action="append",
        default=[],
        metavar="ORG",
        help="organizations served; a message of any other is refused (repeatable)",
    )
    v.add_argument("--uuid-orgs", action="store_true", help="require UUID organization ids")
    return parser


_HEX = "0123456789abcdefABCDEF"


def _is_uuid(org: str) -> bool:
    """8-4-4-4-12 hex digits, either case, as the Rust SDK's check."""
    parts = org.split("-")
    return [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(c in _HEX for p in parts for c in p)


def _direction(kind: str) -> str:
    return "backend_to_device" if kind in ("commands", "config") else "device_to_backend"


def _read(file: Optional[str]) -> bytes:
    if file is None or file == "-":
        return sys.stdin.buffer.read(READ_CAP)
    with open(file, "rb") as f:
        return f.read(READ_CAP)


def _validate(args: argparse.Namespace) -> int:
    for org in args.org:
        problem = id_problem(org, ID_MAX["organization"])
        if problem:
            raise Usage(f"--org {org!r}: organization id {problem}")
    try:
        payload = _read(args.file)
    except OSError as e:
        print(f"dese-schemas: cannot read the payload: {e}", file=sys.stderr)
        return 5
    try:
        # In the order `dese validate` checks: the topic, the organizations served, UTF-8 (for
        # a payload within the size limit), the UUID rule, then the message.
        parsed = parse_topic(args.topic)
        if args.org and parsed.org not in args.org:
            raise Invalid(
                "org_not_allowed", f"organization {parsed.org} is not one of those served (--org)"
            )
        if len(payload) <= MAX_PAYLOAD:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError as e:
                raise Invalid("syntax", f"payload is not UTF-8: invalid byte at offset {e.start}")
        if args.uuid_orgs and not _is_uuid(parsed.org):
            raise Invalid("topic", "topic level 2: organization id is not a UUID")
        message = validate_message(parsed, payload)
    except Invalid as e:
        if args.json:
            verdict = {
                "valid": False,
                "topic": args.topic,
                "reason": e.reason,
                "path": e.path,
                "error": str(e),
            }
            print(json.dumps(verdict, ensure_ascii=True))
        else:
            print(f"invalid: {e} ({e.reason})", file=sys.stderr)
        return 1
    if args.json:
        verdict = {
            "valid": True,
            "topic": args.topic,
            "kind": parsed.kind,
            "org": parsed.org,
            "device": parsed.device,
            "direction": _direction(parsed.kind),
            "message": message,
        }
        print(json.dumps(verdict, ensure_ascii=True))
    else:
        print(f"valid {parsed.kind}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _validate(args)
    except Usage as e:
        print(f"dese-schemas: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
