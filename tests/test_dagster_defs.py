import re
import subprocess
import sys
from pathlib import Path

import pytest

from dap_assets.definitions import defs

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load_and_resolve():
    graph = defs.resolve_asset_graph()
    assert graph is not None
    assert {"dap", "storage", "mlflow"} <= set(defs.resources)


@pytest.mark.slow
def test_dagster_cli_validates_the_workspace():
    exe = Path(sys.executable).with_name("dagster")
    out = subprocess.run(
        [str(exe), "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_dap_model_never_imports_dagster():
    """`dagster_pipes` (the dependency-free external-process protocol) is allowed; the
    Dagster framework is not."""
    framework = re.compile(r"^\s*(from|import)\s+dagster(\.|\s|$)")
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in (ROOT / "dap_model").rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if framework.match(line)
    ]
    assert offenders == []
