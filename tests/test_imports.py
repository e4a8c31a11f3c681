"""Imports stay lean and acyclic: `erasure submit` loads no lakehouse driver, no AWS SDK (unless KMS wraps the keys)
and no workflow code, and no module imports itself back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("erasure", "workflows", "activities", "connectors", "stores", "evidence", "domain", "emulators", "examples")
HEAVY = ("deltalake", "pyarrow")
# Not needed to store a request and start its workflow by name: the AWS SDK (only KMS, when configured, loads it) and
# the workflows (the worker's code) cost `erasure submit` more CPU than the request's whole erasure.
NOT_FOR_SUBMIT = (*HEAVY, "boto3", "botocore", "s3transfer", "workflows")


def imported_modules(*argv: str) -> set[str]:
    """The modules a fresh `python -X importtime ARGV` loads, read from its stderr."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert lines, "python printed no import times"
    return {line.rsplit("|", 1)[1].strip() for line in lines}


def test_submit_help_imports_no_lakehouse_driver() -> None:
    modules = imported_modules("-m", "erasure.cli", "submit", "--help")
    assert "erasure.config" in modules  # the command line did load (it runs as __main__)
    assert not {m for m in modules if m.split(".")[0] in HEAVY}


def test_the_modules_a_submit_runs_import_no_lakehouse_driver_aws_sdk_or_workflow() -> None:
    modules = imported_modules("-c", "import erasure.cli, erasure.intake, erasure.services, erasure.status")
    assert "erasure.intake" in modules
    assert not {m for m in modules if m.split(".")[0] in NOT_FOR_SUBMIT}


def test_no_module_cycle_in_the_product() -> None:
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    assert _cycles(graph) == []


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while (top := stack.pop()) != module:
                component.append(top)
            if component:
                found.append(sorted([module, *component]))

    for module in edges:
        if module not in index:
            visit(module)
    return found
