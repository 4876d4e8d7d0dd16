"""Materialise every asset of the code location, in dependency order, into the Dagster instance
at $DAGSTER_HOME (so that the runs appear in `dagster dev`). `make run` calls this.

    python -m dap_assets.pipeline [--profile tiny] [--set KEY=VALUE ...] [--select KEY ...]

Unpartitioned assets run together until a partitioned asset is reached; a dynamically
partitioned asset runs once per partition (the partitions are added first by evaluating the
code location's sensors, as the daemon would); a failed partition is reported and the others
go on. Prints the time per asset and where the results are."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from dap_model.config import load_config, project_dir


def _sensor_partition_requests(defs, instance, resources: dict) -> int:
    """Evaluate every sensor once and apply its dynamic-partition requests; return how many
    partitions were added."""
    from dagster import AddDynamicPartitionsRequest, build_sensor_context

    added = 0
    repo = defs.get_repository_def()
    for sensor in repo.sensor_defs:
        with build_sensor_context(
            instance=instance, definitions=defs, sensor_name=sensor.name, resources=resources
        ) as ctx:
            result = sensor(ctx)
        for req in getattr(result, "dynamic_partitions_requests", None) or []:
            if isinstance(req, AddDynamicPartitionsRequest) and req.partition_keys:
                existing = set(instance.get_dynamic_partitions(req.partitions_def_name))
                new = [k for k in req.partition_keys if k not in existing]
                if new:
                    instance.add_dynamic_partitions(req.partitions_def_name, new)
                    added += len(new)
    return added


def _plan(defs, select: list[str] | None):
    """Asset keys in topological order, grouped into runs: (partitions_def | None, [keys])."""
    from dagster import AssetKey

    graph = defs.resolve_asset_graph()
    order = graph.toposorted_asset_keys
    materializable = [k for k in order if graph.get(k).is_materializable]
    if select:
        wanted = {AssetKey.from_user_string(s) for s in select}
        unknown = wanted - set(materializable)
        if unknown:
            raise SystemExit(f"unknown asset(s): {', '.join(k.to_user_string() for k in unknown)}")
        materializable = [k for k in materializable if k in wanted]
    groups: list[tuple[object, list]] = []
    for key in materializable:
        pdef = graph.get(key).partitions_def
        if groups and groups[-1][0] is None and pdef is None:
            groups[-1][1].append(key)
        elif groups and pdef is not None and groups[-1][0] == pdef:
            groups[-1][1].append(key)
        else:
            groups.append((pdef, [key]))
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dap_assets.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--select", action="append", default=[], help="only these asset keys")
    args = parser.parse_args(argv)

    if args.profile:
        os.environ["DAP_PROFILE"] = args.profile
    cfg = load_config(args.profile, args.overrides)  # fail fast on a bad knob
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(project_dir() / ".dagster")))
    home.mkdir(parents=True, exist_ok=True)

    from dagster import AssetSelection, DagsterInstance, materialize

    from dap_assets.definitions import defs
    from dap_assets.resources import default_resources

    resources = default_resources(profile=cfg.profile, overrides=list(args.overrides))
    all_assets = list(defs.assets or []) + list(defs.asset_checks or [])
    instance = DagsterInstance.get()
    groups = _plan(defs, args.select or None)
    if not groups:
        print("no assets are defined yet: nothing to materialise")
    timings: list[tuple[str, float, str]] = []
    failures: list[str] = []
    for pdef, keys in groups:
        names = ", ".join(k.to_user_string() for k in keys)
        if pdef is None:
            partition_keys: list[str | None] = [None]
        else:
            _sensor_partition_requests(defs, instance, resources)
            partition_keys = list(pdef.get_partition_keys(dynamic_partitions_store=instance))
            if not partition_keys:
                print(f"[{names}] no partitions: skipped")
                continue
        for pk in partition_keys:
            label = f"{names}" + (f" [{pk}]" if pk else "")
            print(f"materialising {label} ...", flush=True)
            t0 = time.perf_counter()
            result = materialize(
                all_assets,
                selection=AssetSelection.assets(*keys),
                instance=instance,
                resources=resources,
                partition_key=pk,
                raise_on_error=False,
                tags={"dap.profile": cfg.profile, "dap.launched_by": "make run"},
            )
            dt = time.perf_counter() - t0
            status = "ok" if result.success else "FAILED"
            timings.append((label, dt, status))
            if not result.success:
                failures.append(label)
                print(f"  {label}: FAILED after {dt:.1f}s (run {result.run_id}); see the Dagster UI", flush=True)
            else:
                print(f"  {label}: ok in {dt:.1f}s", flush=True)

    print("\nTime per run:")
    for label, dt, status in timings:
        print(f"  {dt:8.1f} s  {status:6s} {label}")
    pd = project_dir()
    print(
        f"\nResults:  data store {pd / cfg.storage.root if cfg.storage.backend == 'local' else cfg.storage.bucket}"
        f", reports {pd / 'reports'}, Dagster instance {home}"
        f"\nDagster UI:  make ui   (or: DAGSTER_HOME={home} .venv/bin/dagster dev -w workspace.yaml)"
        f"\nMLflow UI:   .venv/bin/mlflow ui --backend-store-uri sqlite:///{pd / 'mlflow.db'} --host 127.0.0.1"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
