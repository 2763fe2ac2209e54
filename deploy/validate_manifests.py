"""Validates Kubernetes manifests strictly and offline, one PASS/FAIL line per file.

Built-in kinds: against the Kubernetes JSON schemas that the PyPI package kubernetes-validate
carries (its strict variant: an unknown field is an error). Custom resources: against the
openAPIV3Schema of their CRD, made strict the same way (additionalProperties false wherever a
schema lists properties and does not preserve unknown fields). CRD schemas come from
--crd-schema files (deploy/k8s/crd-schemas/*.json, or CRD YAMLs such as KEDA's). A resource
whose kind has no schema is a failure, not a warning.

    python validate_manifests.py --k8s-version 1.33.0 --crd-schema DIR_OR_FILE ... FILE...
"""

import argparse
import copy
import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml


def strict(schema):
    """A copy of an OpenAPI v3 schema in which objects with listed properties allow no others."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def load_crd_schemas(paths):
    schemas = {}
    files = []
    for path in map(pathlib.Path, paths):
        files += sorted(path.glob("*")) if path.is_dir() else [path]
    for file in files:
        if file.suffix == ".json":
            doc = json.loads(file.read_text())
            schemas[(doc["apiVersion"], doc["kind"])] = strict(doc["schema"])
        elif file.suffix in (".yaml", ".yml"):
            for doc in yaml.safe_load_all(file.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    schemas[key] = strict(version["schema"]["openAPIV3Schema"])
    return schemas


def check_resource(resource, k8s_version, crd_schemas):
    """None if valid, else why not."""
    key = (resource.get("apiVersion"), resource.get("kind"))
    if key in crd_schemas:
        errors = sorted(
            jsonschema.Draft7Validator(crd_schemas[key]).iter_errors(resource), key=lambda e: list(e.path)
        )
        if errors:
            return "; ".join(f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors[:5])
        return None
    try:
        kubernetes_validate.validate(resource, k8s_version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return f"no schema for {key[1]} {key[0]} (Kubernetes {k8s_version} or a --crd-schema)"
    except kubernetes_validate.ValidationError as e:
        return f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}"
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--k8s-version", required=True)
    parser.add_argument("--crd-schema", action="append", default=[])
    parser.add_argument("--self-check", action="store_true", help="also prove that misspelled fields fail")
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    crd_schemas = load_crd_schemas(args.crd_schema)
    failed = 0

    if args.self_check:
        # A validator that passes everything would make every line below worthless.
        bad = {
            "a misspelled Deployment field": {
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                "spec": {"replica": 1, "selector": {}, "template": {}},
            },
            "a misspelled KafkaTopic field": {
                "apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic", "metadata": {"name": "x"},
                "spec": {"partition": 12, "replicas": 3},
            },
            "a kind nobody knows": {"apiVersion": "example.org/v1", "kind": "Nothing", "metadata": {"name": "x"}},
        }
        for what, resource in bad.items():
            if check_resource(resource, args.k8s_version, crd_schemas) is None:
                print(f"FAIL validator self-check: {what} was accepted")
                failed += 1
            else:
                print(f"PASS validator self-check: {what} is refused")

    for name in args.files:
        try:
            resources = [r for r in yaml.safe_load_all(pathlib.Path(name).read_text()) if r]
        except yaml.YAMLError as e:
            print(f"FAIL {name}: not YAML: {e}")
            failed += 1
            continue
        problems = []
        for resource in resources:
            why = check_resource(resource, args.k8s_version, crd_schemas)
            if why:
                problems.append(f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}: {why}")
        kinds = sorted({r.get("kind", "?") for r in resources})
        if problems:
            failed += 1
            print(f"FAIL {name} ({len(resources)} resources)")
            for p in problems:
                print(f"    {p}")
        elif not resources:
            failed += 1
            print(f"FAIL {name}: no resources")
        else:
            print(f"PASS {name} ({len(resources)} resources: {', '.join(kinds)}; Kubernetes {args.k8s_version} strict)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
