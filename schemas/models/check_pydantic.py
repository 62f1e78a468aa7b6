"""The Pydantic models that scripts/generate-models writes, on the test vectors: every valid
payload is accepted, and every invalid one is refused unless the reason is a rule outside the
schemas (tenant, thresholds, duplicates, limits, the topic) or the one a schema-derived model
cannot see: an impossible date that the timestamp pattern allows.

    python check_pydantic.py MODELS_DIR VECTORS_DIR
"""
import importlib.util
import json
import pathlib
import sys

from pydantic import ValidationError

KINDS = ["telemetry", "commands", "command_response", "status", "config", "alert"]
OUTSIDE = {"tenant_mismatch", "inconsistent", "other", "too_deep", "too_large", "topic"}
MODEL_LIMITS = {"impossible date"}


def main():
    models_dir, vectors_dir = map(pathlib.Path, sys.argv[1:3])
    models = {}
    for kind in KINDS:
        spec = importlib.util.spec_from_file_location(kind, models_dir / f"{kind}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[kind] = module
        spec.loader.exec_module(module)
        name = "Dese" + "".join(part.capitalize() for part in kind.split("_"))
        models[kind] = getattr(module, name)
    agree = limits = 0
    failed = []
    for path in sorted(vectors_dir.glob("*.json")):
        for v in json.loads(path.read_text())["vectors"]:
            if "payload" not in v:
                continue
            kind = v["topic"].rsplit("/", 1)[-1]
            if kind not in models:
                continue
            try:
                models[kind].model_validate(v["payload"])
                accepted = True
            except ValidationError:
                accepted = False
            expected = v["valid"] or v.get("reason") in OUTSIDE
            if accepted == expected:
                agree += 1
            elif v["name"] in MODEL_LIMITS:
                limits += 1
            else:
                failed.append(f"{path.name} / {v['name']}: {'accepted' if accepted else 'refused'}")
    for line in failed:
        print("FAIL", line)
    print(f"pydantic models: {agree} vectors as the schemas judge them, {limits} known limit(s), {len(failed)} wrong")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
