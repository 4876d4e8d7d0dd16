"""One pipeline execution: the code location's jobs launched as Dagster runs into the instance at
$DAGSTER_HOME, in order, every run tagged with one `dap.pipeline_run` id. `make run` calls this.

    python -m dap_assets.pipeline [--profile tiny] [--set KEY=VALUE ...] [--log-level warning]

`ingest` runs first; new manifest rows are assigned to ingest buckets (`web_video_buckets`
partitions) through the function the new-video sensor uses, and `web_video_ingest` runs once per
bucket with work (new videos, or failed ones to retry; a failed video is recorded in its bucket's
outcomes and the others go on); `weekly_retrain` (the scheduled job) runs last. Each job runs with its own
executor (in-process by default here; `--executor multiprocess` as the daemon runs it), retries and tags. The console gets one line per
asset (time, key figures); Dagster's own event stream is shown at `--log-level` (default warning)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

from dap_model.config import load_config, project_dir
from dap_model.tracking import PIPELINE_TAG

LOCATION_MODULE = "dap_assets.definitions"
LOCAL_INSTANCE = """# The embedded default's Dagster instance: run, event and schedule storage in sqlite files
# here. infra/dagster.yaml is the deployed instance (PostgreSQL, run retries, concurrency pools).
telemetry:
  enabled: false
"""
FIGURES_PER_LINE = 4


def _figures(metadata: dict) -> str:
    """`k=v` for the first few numeric metadata entries of a materialisation."""
    out = []
    for k, v in metadata.items():
        value = getattr(v, "value", v)
        if isinstance(value, dict):  # a table {benchmark: {metric: value}}: its abs_rel per row
            out += [f"{row}/abs_rel={m['abs_rel']:.4g}" for row, m in value.items()
                    if isinstance(m, dict) and isinstance(m.get("abs_rel"), (int, float))]
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out.append(f"{k}={value:.4g}" if isinstance(value, float) else f"{k}={value}")
    return " ".join(out[:FIGURES_PER_LINE])


class _Follower:
    """Prints a line per finished step of a run while it executes (reads its event log by cursor)."""

    KINDS = ("STEP_SUCCESS", "STEP_FAILURE", "ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION")

    def __init__(self, instance, t0: float):
        self.instance, self.t0 = instance, t0

    def clock(self) -> str:
        s = int(time.perf_counter() - self.t0)
        return f"[{s // 60:3d}:{s % 60:02d}]"

    def follow(self, run_id: str, done: threading.Event, label: str) -> None:
        from dagster import DagsterEventType

        kinds = {DagsterEventType[k] for k in self.KINDS}
        cursor, figures = None, {}
        while True:
            finished = done.wait(1.0)
            page = self.instance.get_records_for_run(run_id, cursor=cursor, of_type=kinds)
            cursor = page.cursor
            for record in page.records:
                self._print(record.event_log_entry.dagster_event, figures, label)
            if finished and not page.has_more:
                return

    def _print(self, ev, figures: dict, label: str) -> None:
        from dagster import DagsterEventType

        step = ev.step_key or ""
        if ev.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            figures[step] = _figures(ev.event_specific_data.materialization.metadata)
        elif ev.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            check = ev.event_specific_data
            if not check.passed:
                print(f"{self.clock()}   check {check.check_name} on "
                      f"{check.asset_key.to_user_string()}: {check.severity.value}", flush=True)
        else:
            ok = ev.event_type == DagsterEventType.STEP_SUCCESS
            if ok and step not in figures:
                return  # a check-only step
            status = f"{(ev.event_specific_data.duration_ms or 0) / 1000:7.1f} s" if ok else " FAILED  "
            name = step + (f" [{label}]" if label else "")
            print(f"{self.clock()} {name:<42} {status}  {figures.get(step, '')}", flush=True)


def _run_job(recon_repo, repo_def, instance, name: str, run_config: dict, tags: dict, follower: _Follower,
             partition_key: str | None = None) -> tuple[bool, str]:
    """Execute one job (its executor, retries, tags) and follow it; (success, run id)."""
    from dagster import RunsFilter, execute_job

    run_tags = dict(tags)
    if partition_key is not None:
        run_tags.update(repo_def.get_job(name).get_tags_for_partition_key(partition_key, selected_asset_keys=None))
    done = threading.Event()
    result: dict = {}

    def target() -> None:
        try:
            with execute_job(recon_repo.get_reconstructable_job(name), instance=instance,
                             run_config=run_config, tags=run_tags) as res:
                result["success"], result["run_id"] = res.success, res.run_id
        finally:
            done.set()

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    # the run exists once execute_job has created it: find it by the tags of this launch
    launched = RunsFilter(job_name=name, tags={PIPELINE_TAG: tags[PIPELINE_TAG],
                                               **({"dagster/partition": partition_key} if partition_key else {})})
    runs = instance.get_runs(launched, limit=1)
    while not runs and not done.wait(0.2):
        runs = instance.get_runs(launched, limit=1)
    run_id = runs[0].run_id if runs else result.get("run_id", "")
    if run_id:
        follower.follow(run_id, done, partition_key or "")
    worker.join()
    return bool(result.get("success")), run_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dap_assets.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                        help="Dagster's event stream on the console (default: warning)")
    parser.add_argument("--executor", default="in_process", choices=["in_process", "multiprocess"],
                        help="run config of the jobs' executor: in_process (default: one process, the "
                        "cheapest on a small machine) or multiprocess (a process per step, as the daemon runs them)")
    args = parser.parse_args(argv)

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        # an inherited "ignore SIGTERM" passes to every child: Dagster stops the `tail -F` that mirrors a
        # step's compute log with SIGTERM, and an immune tail outlives the run holding our stdout open.
        # (A background job of a shell ignores SIGINT, and Dagster's in-process execution maps SIGTERM
        # to SIGINT's handler, so a test process that materialised in-process passes SIGTERM ignored.)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    cfg = load_config(args.profile, args.overrides)  # fail fast on a bad knob
    os.environ["DAP_PROFILE"] = cfg.profile
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(project_dir() / ".dagster")))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():  # the embedded instance: sqlite under $DAGSTER_HOME
        (home / "dagster.yaml").write_text(LOCAL_INSTANCE)

    from dagster import DagsterInstance
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from dap_assets.assets.automation import ingest_job, retrain_job, web_video_job
    from dap_assets.assets.web import WEB_VIDEO_BUCKETS, new_video_buckets
    from dap_model.video.buckets import pending_buckets
    from dap_model.storage import open_store

    pipeline_run = uuid.uuid4().hex[:16]
    tags = {PIPELINE_TAG: pipeline_run, "dap.profile": cfg.profile, "dap.launched_by": "make run"}
    run_config = {
        "resources": {"dap": {"config": {"profile": cfg.profile, "overrides": list(args.overrides)}}},
        "loggers": {"console": {"config": {"log_level": args.log_level.upper()}}},
        "execution": {"config": {args.executor: {}}},
    }
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(max(logging.WARNING, getattr(logging, args.log_level.upper())))
    recon_repo = ReconstructableRepository.for_module(
        LOCATION_MODULE, "defs", working_directory=str(Path(__file__).resolve().parents[1]))
    repo_def = recon_repo.get_definition()
    t0 = time.perf_counter()
    print(f"pipeline run {pipeline_run} (profile {cfg.profile}), Dagster instance {home}", flush=True)
    failures: list[str] = []
    with DagsterInstance.get() as instance:
        follower = _Follower(instance, t0)
        ok, run_id = _run_job(recon_repo, repo_def, instance, ingest_job.name, run_config, tags, follower)
        if not ok:
            print(f"{ingest_job.name} failed (Dagster run {run_id}); see the Dagster UI", flush=True)
            return 1
        store = open_store(cfg.storage)
        plan = new_video_buckets(instance, cfg, store)
        if plan.new_buckets:
            instance.add_dynamic_partitions(WEB_VIDEO_BUCKETS.name, plan.new_buckets)
        buckets = sorted(set(plan.touched) | set(pending_buckets(store)))
        print(f"{follower.clock()} {plan.assigned} web videos ({len(plan.new_videos)} new) in "
              f"{len(instance.get_dynamic_partitions(WEB_VIDEO_BUCKETS.name))} buckets, {len(buckets)} with work"
              + (f": {plan.reason}" if plan.mark is None else ""), flush=True)
        for bucket in buckets:
            ok, run_id = _run_job(recon_repo, repo_def, instance, web_video_job.name, run_config, tags, follower, bucket)
            if not ok:
                failures.append(f"{web_video_job.name} [{bucket}] (run {run_id})")
        ok, run_id = _run_job(recon_repo, repo_def, instance, retrain_job.name, run_config, tags, follower)
        if not ok:
            failures.append(f"{retrain_job.name} (run {run_id})")

    elapsed = time.perf_counter() - t0
    pd = project_dir()
    print(f"\n{'FAILED: ' + '; '.join(failures) if failures else 'every job succeeded'} "
          f"in {elapsed / 60:.1f} min; pipeline run {pipeline_run}")
    print(f"Results:    data store {pd / cfg.storage.root if cfg.storage.backend == 'local' else cfg.storage.bucket}"
          f", reports {pd / 'reports'}"
          f"\nDagster UI: make ui   (or: DAGSTER_HOME={home} .venv/bin/dagster dev -w workspace.yaml)"
          f"\nMLflow:     runs tagged {PIPELINE_TAG}={pipeline_run}; .venv/bin/dap compare --pipeline-run {pipeline_run}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
