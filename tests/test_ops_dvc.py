"""DVC: params.yaml is the resolved DapConfig, dvc.yaml is the asset graph, hashes agree with
DVC's own, an S3 remote on moto round-trips, and `dvc repro` runs the stages then rests.

DVC lives in `.venv-dvc` (its hydra pin breaks Dagster) and is only called through its CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from dap_model.config import DapConfig, DvcConfig, StorageConfig, load_config
from dap_model.versioning import configure_remote, dvc_hash, params_yaml, run_dvc, store_hash

ROOT = Path(__file__).resolve().parents[1]
DVC = ROOT / ".venv-dvc" / "bin" / "dvc"
DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES: dict = DVC_YAML.get("stages") or {}
CHEAP_STAGES = ("airsim360_scenes", "labeled_panoramas")

needs_dvc = pytest.mark.skipif(
    not DVC.is_file(), reason=f"{DVC} is missing: `make setup` creates DVC's own virtualenv .venv-dvc"
)


def _dvc_cfg() -> DvcConfig:
    return DvcConfig(executable=str(DVC), timeout_s=600)


def _graph():
    from dap_assets.definitions import defs

    return defs.resolve_asset_graph()


def _stage_edges() -> dict[str, set[str]]:
    """Upstream stages of each stage: those whose outputs it depends on (path equal or nested)."""
    outs = {name: [Path(o) for o in st.get("outs", [])] for name, st in STAGES.items()}
    edges: dict[str, set[str]] = {}
    for name, st in STAGES.items():
        ups = set()
        for dep in map(Path, st.get("deps", [])):
            for other, paths in outs.items():
                if other != name and any(dep == p or p in dep.parents or dep in p.parents for p in paths):
                    ups.add(other)
        edges[name] = ups
    return edges


def test_params_yaml_is_the_resolved_config_of_its_profile():
    committed = (ROOT / "params.yaml").read_text()
    tree = yaml.safe_load(committed)
    assert committed == params_yaml(load_config(tree["profile"])), (
        f"params.yaml is out of date: run `dap dvc params --profile {tree['profile']} --out params.yaml`"
    )
    assert load_config(str(ROOT / "params.yaml")).model_dump(exclude={"profile"}) == \
        load_config(tree["profile"]).model_dump(exclude={"profile"})


def test_dvc_yaml_is_generated_from_the_current_graph():
    from dap_assets.dvc_stages import render

    assert (ROOT / "dvc.yaml").read_text() == render(_graph()), (
        "dvc.yaml is stale: run `python -m dap_assets.dvc_stages --write`"
    )


def test_dvc_stages_are_the_assets_with_the_same_edges():
    graph = _graph()
    assets = {k.to_user_string(): k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    assert set(STAGES) == set(assets), (
        f"only in dvc.yaml: {sorted(set(STAGES) - set(assets))}; only in Dagster: {sorted(set(assets) - set(STAGES))}"
    )
    edges = _stage_edges()
    for name, key in assets.items():
        upstream = {p.to_user_string() for p in graph.get(key).parent_keys if p.to_user_string() in assets}
        assert edges[name] == upstream, f"{name}: dvc.yaml deps {sorted(edges[name])} != Dagster deps {sorted(upstream)}"


def test_dvc_stages_run_their_asset_with_params_yaml_and_read_existing_knob_sections():
    sections = set(DapConfig.model_fields)
    all_outs: list[Path] = []
    for name, st in STAGES.items():
        assert st["cmd"].split()[-2:] == ["--select", name]
        assert "--profile params.yaml" in st["cmd"]
        assert set(st.get("params", [])) <= sections, f"{name}: unknown params {st['params']}"
        assert st["outs"], f"{name} has no outputs"
        all_outs += [Path(o) for o in st["outs"]]
    for a in all_outs:
        for b in all_outs:
            assert a == b or not (a in b.parents or b in a.parents), f"overlapping outputs {a} and {b}"
    assert len(set(all_outs)) == len(all_outs)


@needs_dvc
def test_dvc_hash_is_what_dvc_records(tmp_path):
    repo = tmp_path / "repo"
    (repo / "d" / "sub").mkdir(parents=True)
    (repo / "d" / "a.bin").write_bytes(os.urandom(10_000))
    (repo / "d" / "sub" / "b.txt").write_bytes(b"x\r\ny\r\n")
    (repo / "d" / ".hidden").write_text("h")
    (repo / "f.txt").write_text("file\n")
    run_dvc(["init", "--no-scm", "-q"], _dvc_cfg(), repo)
    run_dvc(["add", "-q", "d", "f.txt"], _dvc_cfg(), repo)
    for name in ("d", "f.txt"):
        recorded = yaml.safe_load((repo / f"{name}.dvc").read_text())["outs"][0]["md5"]
        assert dvc_hash(repo / name) == recorded
    assert dvc_hash(repo / "d").endswith(".dir")


def test_store_hash_of_an_s3_prefix_equals_the_local_dvc_hash(s3_env, tmp_path):
    from dap_model.storage import open_store

    local = tmp_path / "shards"
    (local / "nested").mkdir(parents=True)
    (local / "a.tar").write_bytes(os.urandom(3000))
    (local / "nested" / "b.json").write_text('{"b": 1}')
    store = open_store(StorageConfig(backend="s3", bucket=s3_env["bucket"], endpoint_url=s3_env["endpoint_url"]))
    for p in local.rglob("*"):
        if p.is_file():
            store.put_file(p, f"shards/{p.relative_to(local).as_posix()}")
    assert store_hash(store, "shards") == dvc_hash(local)
    assert store_hash(store, "shards/a.tar") == dvc_hash(local / "a.tar")


@needs_dvc
def test_dvc_push_and_pull_round_trip_through_the_s3_remote(s3_env, tmp_path):
    import boto3

    repo = tmp_path / "repo"
    (repo / "data" / "labeled").mkdir(parents=True)
    payload = {f"train-{i:06d}.tar": os.urandom(5000 + i) for i in range(3)}
    for name, data in payload.items():
        (repo / "data" / "labeled" / name).write_bytes(data)
    cfg = _dvc_cfg().model_copy(update={"remote_url": f"s3://{s3_env['bucket']}/dvc"})
    storage = StorageConfig(backend="s3", bucket=s3_env["bucket"], endpoint_url=s3_env["endpoint_url"])
    run_dvc(["init", "--no-scm", "-q"], cfg, repo)
    assert configure_remote(cfg, storage, repo) == cfg.remote
    local_conf = (repo / ".dvc" / "config.local").read_text()
    assert s3_env["endpoint_url"] in local_conf and "testing" not in local_conf
    run_dvc(["add", "-q", "data/labeled"], cfg, repo)
    run_dvc(["push", "-q"], cfg, repo)

    s3 = boto3.client("s3", endpoint_url=s3_env["endpoint_url"], region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_env["bucket"], Prefix="dvc/").get("Contents", [])]
    version = dvc_hash(repo / "data" / "labeled")
    assert f"dvc/files/md5/{version[:2]}/{version[2:]}" in keys
    assert len([k for k in keys if not k.endswith(".dir")]) == len(payload)

    shutil.rmtree(repo / "data" / "labeled")
    shutil.rmtree(repo / ".dvc" / "cache")
    run_dvc(["pull", "-q"], cfg, repo)
    for name, data in payload.items():
        assert (repo / "data" / "labeled" / name).read_bytes() == data
    assert dvc_hash(repo / "data" / "labeled") == version


def test_dvc_remote_errors_name_the_command(tmp_path):
    from dap_model.versioning import DvcError

    cfg = DvcConfig(executable=str(DVC) if DVC.is_file() else "false")
    with pytest.raises(DvcError, match="dvc.remote_url is empty"):
        configure_remote(cfg, StorageConfig(), tmp_path)
    if DVC.is_file():
        with pytest.raises(DvcError, match=r"`dvc status` failed"):
            run_dvc(["status"], cfg, tmp_path)


def _repro_env(repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAP_", "DAGSTER_", "MLFLOW_"))}
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "DAP_PROJECT_DIR": str(repo), "DAGSTER_HOME": str(repo / ".dagster"),
        "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
    })
    return env


def _dvc(args: list[str], repo: Path, env: dict[str, str]) -> str:
    out = subprocess.run([str(DVC), *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"dvc {' '.join(args)}:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    """A copy of dvc.yaml with the `test` profile's params.yaml, after one `dvc repro` of the
    cheap stages (and their upstream stages)."""
    if not DVC.is_file():
        pytest.skip(f"{DVC} is missing: `make setup` creates DVC's own virtualenv .venv-dvc")
    targets = [s for s in CHEAP_STAGES if s in STAGES]
    if not targets:
        pytest.skip(f"none of {CHEAP_STAGES} is a stage yet")
    repo = tmp_path_factory.mktemp("dvc_repro")
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    (repo / "params.yaml").write_text(params_yaml(load_config("test")))
    env = _repro_env(repo)
    _dvc(["init", "--no-scm", "-q"], repo, env)
    first = _dvc(["repro", *targets], repo, env)
    return {"repo": repo, "env": env, "targets": targets, "first": first}


def test_dvc_repro_runs_the_stages_then_has_nothing_to_do(repro):
    repo, env, targets = repro["repo"], repro["env"], repro["targets"]
    ran = {s for s in STAGES if f"Running stage '{s}'" in repro["first"]}
    expected = set(targets) | {u for t in targets for u in _stage_edges()[t]}
    assert ran == expected, repro["first"]

    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    for stage in ran:
        for out in lock[stage]["outs"]:
            assert out["md5"] == dvc_hash(repo / out["path"]), (stage, out["path"])
        assert lock[stage]["params"]["params.yaml"], stage

    second = _dvc(["repro", *targets], repo, env)
    assert "Running stage" not in second, second

    if "airsim360_scenes" in ran:
        params = repo / "params.yaml"
        original = params.read_text()
        params.write_text(original.replace("\nsim:\n", "\nsim:\n  seed: 1\n", 1).replace("  seed: 0\n", "", 1))
        assert load_config(str(params)).sim.seed == 1
        status = _dvc(["status", *targets], repo, env)
        params.write_text(original)
        assert "airsim360_scenes" in status and "modified" in status.lower(), status


def test_materialisations_record_the_dvc_hash_as_their_data_version(repro):
    repo = repro["repo"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    checked = 0
    with dg.DagsterInstance.from_config(str(repo / ".dagster")) as instance:
        for stage in lock:
            if len(STAGES[stage]["outs"]) != 1:
                continue
            record = instance.get_latest_materialization_event(dg.AssetKey(stage))
            version = record.asset_materialization.tags.get("dagster/data_version")
            assert version == lock[stage]["outs"][0]["md5"], stage
            checked += 1
    assert checked


def test_dap_dvc_cli_writes_checks_and_hashes(tmp_path, capsys):
    from dap_model.cli import main

    out = tmp_path / "params.yaml"
    assert main(["dvc", "params", "--profile", "test", "--out", str(out)]) == 0
    assert main(["dvc", "params", "--profile", "test", "--out", str(out), "--check"]) == 0
    assert load_config(str(out)).train.steps == load_config("test").train.steps
    out.write_text(out.read_text().replace("profile: test", "profile: test\nstale: true"))
    assert main(["dvc", "params", "--profile", "test", "--out", str(out), "--check"]) == 1
    capsys.readouterr()
    assert main(["dvc", "hash", str(out)]) == 0
    assert capsys.readouterr().out.split()[0] == dvc_hash(out)
    assert main(["dvc", "hash", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
