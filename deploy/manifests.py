"""Render the Kubernetes overlays and check every deployment file offline (`make deploy-check`).

    python deploy/manifests.py render deploy/k8s/overlays/self-hosted     # the manifests to apply, on stdout
    python deploy/manifests.py check [--root DIR]                         # exit 1 and one line per problem

Rendering follows a kustomize-style subset (Helm is not on PyPI, kustomize is a Go binary): a `kustomization.yaml`
lists `resources` (files or folders with their own kustomization), an optional `namespace`, `images` (name ->
newName/newTag/digest) and `patches` (files naming their target by kind and metadata.name, merged as strategic merge
patches: maps recursively, lists of named items by `name`, other lists replaced, null removes a key).

Checks, all without the network: the compose file against the Compose specification's JSON schema vendored by
check-jsonschema; every rendered manifest against the Kubernetes schemas vendored by kubernetes-validate (strict:
unknown fields are errors); and the deployment's own rules (base images pinned by digest, no Secret objects or
literal secrets in the files, the worker's grace period longer than its drain, resources on every container).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.33.0"
ROOT = Path(__file__).resolve().parent.parent
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|API_KEY|PRIVATE", re.IGNORECASE)
CREDENTIALS_IN_URL = re.compile(r"://[^/@\s]+:[^/@\s]+@")


class RenderError(Exception):
    """A kustomization that cannot be rendered: names the file and what is wrong."""


# -- rendering ---------------------------------------------------------------------------------------------------


def render(directory: Path) -> list[dict[str, Any]]:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise RenderError(f"{path}: missing: expected a kustomization.yaml")
    spec = _load_one(path)
    docs: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        target = directory / entry
        docs.extend(render(target) if target.is_dir() else _load_all(target))
    for entry in spec.get("patches", []):
        _apply_patch(docs, directory / entry["path"])
    for image in spec.get("images", []):
        _set_image(docs, image)
    if "namespace" in spec:
        for doc in docs:
            doc.setdefault("metadata", {})["namespace"] = spec["namespace"]
    return docs


def _apply_patch(docs: list[dict[str, Any]], path: Path) -> None:
    patch = _load_one(path)
    kind, name = patch.get("kind"), patch.get("metadata", {}).get("name")
    for doc in docs:
        if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
            merged = _merge(doc, patch)
            doc.clear()
            doc.update(merged)
            return
    raise RenderError(f"{path}: target: expected a resource {kind}/{name} in the overlay's resources, found none")


def _merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = _merge(base.get(key), value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        out_list = list(base)
        index = {item["name"]: i for i, item in enumerate(out_list)}
        for item in patch:
            if item["name"] in index:
                out_list[index[item["name"]]] = _merge(out_list[index[item["name"]]], item)
            else:
                out_list.append(item)
        return out_list
    return patch


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(item, dict) and "name" in item for item in items)


def _set_image(docs: list[dict[str, Any]], image: dict[str, str]) -> None:
    name = image["name"]
    new = image.get("newName", name)
    if "digest" in image:
        new += f"@{image['digest']}"
    elif "newTag" in image:
        new += f":{image['newTag']}"
    for container in _containers(docs):
        if container.get("image", "").split("@")[0].rsplit(":", 1)[0] == name:
            container["image"] = new


def _containers(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for doc in docs:
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        yield from pod.get("initContainers", [])
        yield from pod.get("containers", [])


def _load_one(path: Path) -> dict[str, Any]:
    docs = _load_all(path)
    if len(docs) != 1:
        raise RenderError(f"{path}: documents: expected one YAML document, got {len(docs)}")
    return docs[0]


def _load_all(path: Path) -> list[dict[str, Any]]:
    try:
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    except FileNotFoundError:
        raise RenderError(f"{path}: missing: named by a kustomization") from None
    except yaml.YAMLError as exc:
        raise RenderError(f"{path}: yaml: {str(exc).splitlines()[0]}") from None
    for doc in docs:
        if not isinstance(doc, dict):
            raise RenderError(f"{path}: document: expected a mapping, got {type(doc).__name__}")
    return docs


# -- checks ------------------------------------------------------------------------------------------------------


def check(root: Path) -> list[str]:
    """Every problem in the deployment files under `root`, one line each; empty when all is well."""
    deploy = root / "deploy"
    problems = check_dockerfile(root / "Dockerfile") + check_compose(deploy / "compose" / "compose.yaml")
    overlays = sorted(p for p in (deploy / "k8s" / "overlays").iterdir() if p.is_dir())
    if not overlays:
        problems.append(f"{deploy / 'k8s' / 'overlays'}: overlays: expected at least one overlay, found none")
    for overlay in overlays:
        problems += check_overlay(overlay)
    return problems


def check_dockerfile(path: Path) -> list[str]:
    text = path.read_text()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.MULTILINE))
    problems = []
    for base in re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE):
        resolved = args.get(base.strip("${}"), base)
        if "@sha256:" not in resolved:
            problems.append(f"{path}: FROM {base}: expected a base image pinned by digest (@sha256:...)")
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"{path}: USER: expected the final stage to run as a non-root user")
    return problems


def check_compose(path: Path) -> list[str]:
    try:
        data = _load_one(path)
    except RenderError as exc:
        return [str(exc)]
    schema = json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = [
        f"{path}: {_where(error.absolute_path)}: {error.message}"
        for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    ]
    for name, service in (data.get("services") or {}).items():
        environment = service.get("environment") or {}
        pairs = environment.items() if isinstance(environment, dict) else (e.partition("=")[::2] for e in environment)
        for key, value in pairs:
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                problems.append(f"{path}: services.{name}.environment.{key}: expected a secret file, got a value")
            if CREDENTIALS_IN_URL.search(str(value)):
                problems.append(f"{path}: services.{name}.environment.{key}: expected no password in the URL")
    return problems


def check_overlay(overlay: Path) -> list[str]:
    try:
        docs = render(overlay)
    except RenderError as exc:
        return [str(exc)]
    settings: dict[str, str] = next((d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"), {})
    problems = []
    for doc in docs:
        where = f"{overlay}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{where}: {_where(exc.absolute_path)}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{where}: apiVersion: no schema for {doc.get('apiVersion')} in Kubernetes")
        problems += [f"{where}: {problem}" for problem in _rules(doc, settings)]
    return problems


def _rules(doc: dict[str, Any], settings: dict[str, str]) -> list[str]:
    if doc.get("kind") == "Secret":
        return ["kind: expected Secrets as references only, got a Secret object in the manifests"]
    pod = doc.get("spec", {}).get("template", {}).get("spec")
    if not isinstance(pod, dict):
        return []
    problems = []
    for container in pod.get("initContainers", []) + pod.get("containers", []):
        if not container.get("resources", {}).get("requests"):
            problems.append(f"containers.{container.get('name')}.resources.requests: expected requests, got none")
        for variable in container.get("env", []):
            if SECRET_NAME.search(variable.get("name", "")) and "value" in variable:
                problems.append(f"containers.{container.get('name')}.env.{variable['name']}: expected a secretKeyRef")
    if doc.get("metadata", {}).get("name") == "erasure-worker":
        drain = float(settings.get("ERASURE_WORKER_SHUTDOWN_S", 0))
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if grace <= drain:
            problems.append(
                f"spec.template.spec.terminationGracePeriodSeconds: expected more than the worker's drain "
                f"({drain:g} s), got {grace}"
            )
    return problems


def _where(path: Any) -> str:
    return ".".join(str(part) for part in path) or "(top)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    render_cmd = commands.add_parser("render", help="print an overlay's manifests")
    render_cmd.add_argument("overlay", type=Path)
    check_cmd = commands.add_parser("check", help="validate the deployment files offline")
    check_cmd.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this one)")
    args = parser.parse_args(argv)
    if args.command == "render":
        try:
            print(yaml.safe_dump_all(render(args.overlay), sort_keys=False), end="")
        except RenderError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    problems = check(args.root)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"deploy-check: {'FAILED, ' + str(len(problems)) + ' problem(s)' if problems else 'ok'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
