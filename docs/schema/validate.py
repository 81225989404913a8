"""Validates contract v1 values against the JSON Schemas in this folder.

Usage: python validate.py <name> [file]   (outbound, inbound, status,
heartbeat, dead-letter, receipt, channel-config); one JSON document per line
in the file (default: stdin), one answer per line on stdout: "ok" or "invalid: <why>". Needs `jsonschema`
(4.18 or newer). The tests in tests/e2e/contract.rs run it.
"""
import json
import pathlib
import sys

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

HERE = pathlib.Path(__file__).resolve().parent


def validator(name):
    schemas = [json.loads(p.read_text(encoding="utf-8")) for p in HERE.glob("*.schema.json")]
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)
    schema = json.loads((HERE / f"{name}.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=registry)


def main():
    v = validator(sys.argv[1])
    lines = open(sys.argv[2], encoding="utf-8") if len(sys.argv) > 2 else sys.stdin
    for line in lines:
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as e:
            print(f"invalid: not JSON ({e})", flush=True)
            continue
        errors = sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            e = errors[0]
            where = "/".join(str(p) for p in e.absolute_path) or "(root)"
            print(f"invalid: {where}: {e.message}", flush=True)
        else:
            print("ok", flush=True)


if __name__ == "__main__":
    main()
