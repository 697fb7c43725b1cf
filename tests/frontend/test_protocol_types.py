"""The frontend's protocol types are generated from engine/protocol.py, and the committed copies are current.

``frontend/src/generated/protocol.schema.json`` is the models' JSON Schema (``python -m engine.protocol
--json-schema``, which ``make frontend`` runs when engine/protocol.py changes) and
``frontend/src/generated/protocol.ts`` is what ``npm run protocol`` (part of ``npm run build``) makes of
it. Both are regenerated here into a temporary folder, with the package's own script, and compared.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.protocol import json_schema

REPO_ROOT = Path(__file__).resolve().parents[2]
FRONTEND = REPO_ROOT / "frontend"
GENERATED = FRONTEND / "src" / "generated"
HOW = "regenerate with `make frontend` (or `python -m engine.protocol --json-schema > {schema}` and `npm run protocol`)"


def test_the_committed_json_schema_is_the_models_schema():
    written = (GENERATED / "protocol.schema.json").read_text()
    assert written == json.dumps(json_schema(), indent=2, sort_keys=True) + "\n", \
        "protocol.schema.json is stale: " + HOW.format(schema=GENERATED / "protocol.schema.json")


def test_the_committed_typescript_is_what_the_build_generates(tmp_path):
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    if not (FRONTEND / "node_modules" / ".bin" / "json2ts").exists():
        pytest.fail("frontend/node_modules lacks json-schema-to-typescript: run `make frontend` (npm ci) first")
    work = tmp_path / "frontend"
    (work / "src" / "generated").mkdir(parents=True)
    shutil.copy(FRONTEND / "package.json", work / "package.json")
    (work / "node_modules").symlink_to(FRONTEND / "node_modules")
    (work / "src" / "generated" / "protocol.schema.json").write_text(json.dumps(json_schema(), indent=2,
                                                                                sort_keys=True) + "\n")
    subprocess.run(["npm", "run", "-s", "protocol"], cwd=work, check=True, capture_output=True, timeout=120)
    assert (work / "src" / "generated" / "protocol.ts").read_text() == (GENERATED / "protocol.ts").read_text(), \
        "frontend/src/generated/protocol.ts is stale: " + HOW.format(schema=GENERATED / "protocol.schema.json")
