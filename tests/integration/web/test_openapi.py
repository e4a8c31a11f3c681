"""The committed OpenAPI document is the one `erasure serve` serves."""

from __future__ import annotations

import json
from pathlib import Path

from erasure.config import Config
from erasure.web.app import create_app

REPO = Path(__file__).resolve().parents[3]
DOCUMENT = REPO / "docs" / "openapi.json"


def current_document(tmp: Path) -> dict[str, object]:
    app = create_app(Config(home=tmp, database_url="", temporal_address=""), REPO / "examples" / "systems.yaml")
    return app.openapi()


def test_the_committed_openapi_document_is_current(tmp_path: Path) -> None:
    # to refresh it: python -m tests.integration.web.test_openapi
    assert json.loads(DOCUMENT.read_text()) == current_document(tmp_path)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        DOCUMENT.write_text(json.dumps(current_document(Path(folder)), indent=2) + "\n")
