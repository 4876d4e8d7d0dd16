"""DVC: params.yaml is the resolved DapConfig, dvc.yaml is the asset graph, hashes agree with
DVC's own, an S3 remote on moto round-trips, and `dvc repro` runs the stages then rests.

DVC lives in `.venv-dvc` (its hydra pin breaks Dagster) and is only called through its CLI."""

from __future__ import annotations

import json
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



def test_dvc_is_installed_in_its_own_virtualenv():
    """`make setup` creates .venv-dvc: every DVC test below uses it, none skips without it."""
    assert DVC.is_file(), f"{DVC} is missing: `make setup` creates DVC's own virtualenv .venv-dvc"


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
    from dap_assets.dvc_stages import PLACEMENT

    sections = set(DapConfig.model_fields) - {"profile"}
    all_outs: list[Path] = []
    for name, st in STAGES.items():
        assert st["cmd"] == f"python -m dap_assets.dvc_stages --run {name}"
        assert set(st.get("params", [])) <= sections - set(PLACEMENT), f"{name}: params {st.get('params')}"
        assert st["outs"], f"{name} has no outputs"
        all_outs += [Path(o) for o in st["outs"]]
    for a in all_outs:
        for b in all_outs:
            assert a == b or not (a in b.parents or b in a.parents), f"overlapping outputs {a} and {b}"
    assert len(set(all_outs)) == len(all_outs)


# Assets whose work runs in another process: (module, function) of that process's entry point;
# the asset's own module must name it (so a change of launcher fails here, not silently).
SUBPROCESS_ENTRIES = {"dap_depth_model": ("dap_model.training.launch", "run_args")}


def test_each_stage_declares_exactly_the_config_sections_its_code_reads():
    """ast walk from every asset function through the dap_model calls it makes with the config
    (`tests/config_reads.py`): the sections read, less PLACEMENT, are the stage's `reads`."""
    import inspect

    from tests.config_reads import ConfigReads
    from dap_assets.dvc_stages import PLACEMENT, STAGES as DECLARED

    analysis = ConfigReads()
    graph = _graph()
    from dap_assets.definitions import defs

    fns = {k.to_user_string(): a.op.compute_fn.decorated_fn for a in defs.assets for k in a.keys}
    checked = 0
    for name, spec in DECLARED.items():
        fn = fns[name]
        reads = analysis.reads_of(fn.__module__, fn.__name__)
        sections, escapes = set(reads.sections), set(reads.escapes)
        if name in SUBPROCESS_ENTRIES:
            module, entry = SUBPROCESS_ENTRIES[name]
            assert module in inspect.getsource(sys.modules[fn.__module__]), f"{name} no longer launches {module}"
            sub = analysis.reads_of(module, entry)
            sections |= sub.sections
            escapes |= sub.escapes
        assert not escapes, f"{name}: the config goes where the analysis cannot follow: {sorted(escapes)}"
        assert set(spec.reads) == sections - set(PLACEMENT), (
            f"{name}: declared {sorted(spec.reads)}, its code reads {sorted(sections - set(PLACEMENT))} "
            f"(through {len(reads.functions)} functions): fix STAGES in dap_assets/dvc_stages.py, then "
            "`python -m dap_assets.dvc_stages --write`"
        )
        assert graph.get(dg.AssetKey(name)).is_materializable
        checked += 1
    assert checked == len(DECLARED) >= 17


def test_the_config_read_analysis_follows_calls_and_reports_what_it_cannot_follow(tmp_path, monkeypatch):
    """The analysis itself on a small package: a read through two calls is found, and one through
    a config handed back in a tuple; a config handed to an outside function is an escape; a
    config that is never passed adds nothing."""
    from tests import config_reads

    pkg = tmp_path / "dap_model"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "lib.py").write_text(
        "import json\n"
        "from dap_model.config import DapConfig\n"
        "def leaf(c):\n    return c.curation.pseudo_views\n"
        "def middle(x, cfg):\n    return leaf(cfg) + x\n"
        "def outside(cfg):\n    return json.dumps(cfg)\n"
        "def untouched(cfg, other):\n    return other.train\n"
        "def passthrough(cfg):\n    return 1, cfg\n"
    )
    (tmp_path / "dap_assets").mkdir()
    (tmp_path / "dap_assets" / "a.py").write_text(
        "from dap_model.lib import middle, outside, passthrough, untouched\n"
        "def one(dap: DapConfigResource):\n    cfg = dap.get()\n    _, back = passthrough(cfg)\n"
        "    return middle(1, cfg=cfg), untouched(cfg, None), back.eval\n"
        "def two(dap: DapConfigResource):\n    return outside(dap.get()), dap.get().sim.seed\n"
    )
    monkeypatch.setattr(config_reads, "ROOT", tmp_path)
    analysis = config_reads.ConfigReads()
    one = analysis.reads_of("dap_assets.a", "one")
    assert one.sections == {"curation", "eval"} and not one.escapes
    assert {"dap_model.lib:leaf", "dap_model.lib:middle", "dap_model.lib:untouched"} <= one.functions
    two = analysis.reads_of("dap_assets.a", "two")
    assert two.sections == {"sim"} and any("json.dumps" in e for e in two.escapes), two.escapes


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


@pytest.mark.slow
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


def _changed_knob(tree: dict, section: str) -> str:
    """Change the first scalar knob of `section` in a params tree in place; return its dotted name."""
    for knob, value in tree[section].items():
        if isinstance(value, bool):
            tree[section][knob] = not value
        elif isinstance(value, (int, float)):
            tree[section][knob] = value + 1
        elif isinstance(value, str):
            tree[section][knob] = value + "x"
        else:
            continue
        return f"{section}.{knob}"
    raise AssertionError(f"section {section} has no scalar knob")


@pytest.mark.slow
def test_dvc_status_reports_exactly_the_stages_that_read_a_changed_knob(tmp_path):
    """The committed dvc.yaml in a scratch project whose outputs exist and are recorded
    (`dvc commit`, nothing runs): changing one knob of a section makes `dvc status` name the
    stages that read that section and no other; a knob of a placement section names none."""
    from dap_assets.dvc_stages import PLACEMENT, STAGES as DECLARED

    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    base = params_yaml(load_config("test"))
    (repo / "params.yaml").write_text(base)
    for st in STAGES.values():
        for out in map(Path, st["outs"]):
            target = repo / out
            if out.suffix:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(str(out))
            else:
                target.mkdir(parents=True, exist_ok=True)
                (target / "part-0").write_text(str(out))
    env = _repro_env(repo)
    _dvc(["init", "--no-scm", "-q"], repo, env)
    _dvc(["commit", "-f", "-q"], repo, env)
    assert json.loads(_dvc(["status", "--json"], repo, env)) == {}

    def stages_after(change) -> set[str]:
        tree = yaml.safe_load(base)
        knob = change(tree)
        (repo / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
        status = json.loads(_dvc(["status", "--json"], repo, env))
        (repo / "params.yaml").write_text(base)
        hit = set()
        for stage, entries in status.items():
            for entry in entries:
                changed = entry.get("changed deps", {}) if isinstance(entry, dict) else {}
                assert set(changed) <= {"params.yaml"}, (knob, stage, entry)
                if changed:
                    hit.add(stage)
        return hit

    def set_height(tree):
        tree["train"]["height"] += 16
        return "train.height"

    assert "stage1_pseudo_labels" in stages_after(set_height)
    sections = [n for n, v in yaml.safe_load(base).items() if isinstance(v, dict)]
    for section in sections:
        readers = {name for name, spec in DECLARED.items() if section in spec.reads}
        assert stages_after(lambda tree: _changed_knob(tree, section)) == readers, section
        if section in PLACEMENT:
            assert not readers
    assert {s for spec in DECLARED.values() for s in spec.reads} <= set(sections)


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
    targets = list(CHEAP_STAGES)
    assert set(targets) <= set(STAGES)
    repo = tmp_path_factory.mktemp("dvc_repro")
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    (repo / "params.yaml").write_text(params_yaml(load_config("test")))
    env = _repro_env(repo)
    _dvc(["init", "--no-scm", "-q"], repo, env)
    first = _dvc(["repro", *targets], repo, env)
    return {"repo": repo, "env": env, "targets": targets, "first": first}


@pytest.mark.slow
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


@pytest.mark.slow
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
