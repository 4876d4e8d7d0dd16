"""`make ui`: the Dagster webserver + daemon (`dagster dev`) and the MLflow UI, on loopback.

Each server runs in its own process group, so Ctrl-C (or SIGTERM) stops both cleanly
(`dagster dev` started with `&` from a non-interactive shell ignores signals otherwise)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from dap_model.config import load_config, project_dir
from dap_model.tracking import default_artifact_root, resolve_tracking_uri


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dap_assets.ui")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--dagster-port", type=int, default=3000)
    p.add_argument("--mlflow-port", type=int, default=5000)
    args = p.parse_args(argv)

    pd = project_dir()
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ)
    env.setdefault("DAGSTER_HOME", str(pd / ".dagster"))
    Path(env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    uri = resolve_tracking_uri(load_config().mlflow)
    cmds = [
        [str(bin_dir / "dagster"), "dev", "-w", str(pd / "workspace.yaml"), "-h", args.host, "-p", str(args.dagster_port)],
    ]
    if not uri.startswith(("http://", "https://")):
        cmds.append(
            [str(bin_dir / "mlflow"), "ui", "--backend-store-uri", uri, "--default-artifact-root",
             default_artifact_root(), "--host", args.host, "--port", str(args.mlflow_port)]
        )
    procs = [subprocess.Popen(c, cwd=pd, env=env, start_new_session=True) for c in cmds]
    print(f"Dagster UI: http://{args.host}:{args.dagster_port}")
    print(f"MLflow UI:  {uri if uri.startswith('http') else f'http://{args.host}:{args.mlflow_port}'}")
    print("Ctrl-C stops both.")

    def stop(*_):
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    try:
        for proc in procs:
            proc.wait()
    except KeyboardInterrupt:
        stop()
        for proc in procs:
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
