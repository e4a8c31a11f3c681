"""`make deploy-check` passes on the repository's deployment files and fails on a broken copy, without the network."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "manifests.py"


def deploy_check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "check", "--root", str(root)], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The deployment files of this repository, in a folder of the test's own."""
    shutil.copy(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def edit_yaml(path: Path, change: Callable[[list[dict]], None]) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    change(docs)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def test_the_repositorys_deployment_files_pass(copy: Path) -> None:
    result = deploy_check(copy)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "deploy-check: ok"


def test_rendering_applies_the_overlay() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "render", str(ROOT / "deploy/k8s/overlays/temporal-cloud")],
        capture_output=True,
        text=True,
        check=True,
    )
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(result.stdout)}
    assert {d["metadata"]["namespace"] for d in docs.values()} == {"erasure"}
    assert docs[("ConfigMap", "erasure")]["data"]["TEMPORAL_ADDRESS"].endswith(".tmprl.cloud:7233")
    worker = docs[("Deployment", "erasure-worker")]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in worker["env"]}
    assert env["TEMPORAL_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "erasure-temporal-cloud"
    assert "DATABASE_URL" in env  # the patch added to the named container's list, it did not replace it
    assert worker["image"] == "registry.example-platform.com/erasure-orchestrator:0.1.0"
    assert not any(kind == "Secret" for kind, _ in docs)


def _misspell_pdb_field(docs: list[dict]) -> None:
    docs[0]["spec"]["maxUnavailabel"] = docs[0]["spec"].pop("maxUnavailable")


def _worker_grace_too_short(docs: list[dict]) -> None:
    docs[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 30


def _memory_as_a_list(docs: list[dict]) -> None:
    docs[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"] = ["256Mi"]


@pytest.mark.parametrize(
    ("file", "change", "expected"),
    [
        ("deploy/k8s/base/worker-pdb.yaml", _misspell_pdb_field, "PodDisruptionBudget/erasure-worker: spec"),
        ("deploy/k8s/base/worker.yaml", _worker_grace_too_short, "terminationGracePeriodSeconds: expected more"),
        ("deploy/k8s/base/worker.yaml", _memory_as_a_list, "resources.requests.memory"),
    ],
)
def test_a_broken_manifest_fails_naming_the_overlay_and_field(
    copy: Path, file: str, change: Callable[[list[dict]], None], expected: str
) -> None:
    edit_yaml(copy / file, change)
    result = deploy_check(copy)
    assert result.returncode == 1
    assert expected in result.stderr
    # the base is in both overlays: each one reports it
    assert "overlays/self-hosted" in result.stderr and "overlays/temporal-cloud" in result.stderr


def test_a_broken_compose_file_fails(copy: Path) -> None:
    def break_compose(docs: list[dict]) -> None:
        docs[0]["services"]["worker"]["deploy"]["replica"] = docs[0]["services"]["worker"]["deploy"].pop("replicas")
        docs[0]["services"]["temporal"]["depends_on"]["postgres"]["condition"] = "service_ready"

    edit_yaml(copy / "deploy/compose/compose.yaml", break_compose)
    result = deploy_check(copy)
    assert result.returncode == 1
    assert "compose.yaml: services.worker.deploy: 'replica' does not match" in result.stderr
    assert "compose.yaml: services.temporal: " in result.stderr


def test_a_secret_written_into_the_compose_file_fails(copy: Path) -> None:
    def write_password(docs: list[dict]) -> None:
        docs[0]["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "hunter2"

    edit_yaml(copy / "deploy/compose/compose.yaml", write_password)
    result = deploy_check(copy)
    assert result.returncode == 1
    assert "services.postgres.environment.POSTGRES_PASSWORD: expected a secret file" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_a_secret_object_or_an_unpinned_base_image_fails(copy: Path) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "erasure-db"}, "stringData": {"url": "x"}}
    (copy / "deploy/k8s/base/secret.yaml").write_text(yaml.safe_dump(secret))
    edit_yaml(copy / "deploy/k8s/base/kustomization.yaml", lambda docs: docs[0]["resources"].append("secret.yaml"))
    dockerfile = copy / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("@sha256:", ":tag-").replace("USER 10001:10001", ""))
    result = deploy_check(copy)
    assert result.returncode == 1
    assert "Secret/erasure-db: kind: expected Secrets as references only" in result.stderr
    assert "Dockerfile: FROM ${PYTHON_IMAGE}: expected a base image pinned by digest" in result.stderr
    assert "Dockerfile: USER: expected the final stage to run as a non-root user" in result.stderr


def test_a_patch_without_its_target_fails(copy: Path) -> None:
    edit_yaml(
        copy / "deploy/k8s/overlays/self-hosted/settings.yaml", lambda docs: docs[0]["metadata"].update(name="other")
    )
    result = deploy_check(copy)
    assert result.returncode == 1
    assert "settings.yaml: target: expected a resource ConfigMap/other" in result.stderr
