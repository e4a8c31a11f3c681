"""A property-based run of the served OpenAPI document (schemathesis): no 500, no response outside the schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.web.conftest import Served

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_no_generated_request_gets_a_500_or_a_response_outside_the_schema(served: Served, tmp_path: Path) -> None:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    run = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{served.url}/openapi.json",
            "--checks",
            CHECKS,
            "--header",
            f"Authorization: Bearer {served.tokens['root']}",
            "--max-examples",
            "25",
            "--seed",
            "14",
            "--generation-deterministic",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "passed" in run.stdout.lower()
