import subprocess
import sys
from pathlib import Path

from dap_assets.definitions import defs

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load_and_resolve():
    graph = defs.resolve_asset_graph()
    assert graph is not None
    assert {"dap", "storage", "mlflow"} <= set(defs.resources)


def test_dagster_cli_validates_the_workspace():
    exe = Path(sys.executable).with_name("dagster")
    out = subprocess.run(
        [str(exe), "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_dap_model_never_imports_dagster():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "dap_model").rglob("*.py")
        if any(
            line.strip().startswith(("import dagster", "from dagster"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []
