"""Runs the installed `dese_schemas` on cases judged by the Rust SDK and reports every case
whose verdict, reason or path differs: the test vectors (`schemas/vectors/*.json`), and any
file of generated cases given on the command line (`cargo xtask near-valid` writes them).

    python agreement.py VECTORS_DIR [CASES.json ...]

Exit status 0 when all agree, 1 otherwise.
"""
import json
import pathlib
import sys

from dese_schemas import Invalid, validate


def payload_bytes(case):
    if "payload_text" in case:
        return case["payload_text"].encode("utf-8", "surrogatepass")
    return json.dumps(case["payload"], ensure_ascii=False).encode("utf-8")


def judge(case):
    try:
        validate(case["topic"], payload_bytes(case))
        return (True, None, None)
    except Invalid as e:
        return (False, e.reason, e.path)


def expected(case):
    if case["valid"]:
        return (True, None, None)
    return (False, case["reason"], case.get("path"))


def main():
    vectors = pathlib.Path(sys.argv[1])
    sets = []
    for path in sorted(vectors.glob("*.json")):
        sets.append((path.name, json.loads(path.read_text())["vectors"]))
    for extra in sys.argv[2:]:
        sets.append((pathlib.Path(extra).name, json.loads(pathlib.Path(extra).read_text())))
    total = failed = 0
    for name, cases in sets:
        for case in cases:
            total += 1
            got, want = judge(case), expected(case)
            if got != want:
                failed += 1
                if failed <= 40:
                    print(f"DIFFERS {name} / {case.get('name', case['topic'])}: Rust {want}, Python {got}")
                    if "payload_text" in case:
                        print(f"    payload: {case['payload_text'][:300]!r}")
    print(f"python dese_schemas: {total - failed} of {total} cases agree with Rust")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
