"""Trainer: schedules, augmentations, the streaming data position, atomic checkpoints, exact
resume after SIGKILL, DDP (gloo, 2 processes on CPU), bf16 on CUDA (skipped without one)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dap_model.config import load_config
from dap_model.errors import ConfigError
from dap_model.training import checkpoint as ckpt
from dap_model.training.data import Augment, BatchLoader, ShardSource, ShardStream, augment
from dap_model.training.schedule import lr_factor
from tests.training_data import build_store

ROOT = Path(__file__).resolve().parents[1]


def test_lr_schedule_warmup_then_decay():
    f = [lr_factor(s, 100, 10, "cosine", 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[-1] == pytest.approx(0.1, abs=0.01)
    lin = [lr_factor(s, 100, 0, "linear", 0.0) for s in range(101)]
    assert lin[50] == pytest.approx(0.5) and lin[100] == pytest.approx(0.0)
    assert lr_factor(70, 100, 5, "constant", 0.0) == 1.0


def test_roll_and_flip_move_rgb_and_depth_together():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 50, (16, 32)).astype(np.float32)
    rgb = np.repeat((depth / 50.0)[..., None], 3, axis=2).astype(np.float32)  # rgb encodes depth
    aug = Augment(flip_prob=0.5, roll_prob=1.0, jitter_prob=0.0)
    changed = 0
    for seed in range(12):
        r, d = augment(rgb, depth, np.random.default_rng(seed), aug)
        np.testing.assert_allclose(r[..., 0] * 50.0, d, rtol=1e-5)
        changed += not np.array_equal(d, depth)
        r2, d2 = augment(rgb, depth, np.random.default_rng(seed), aug)
        assert np.array_equal(r, r2) and np.array_equal(d, d2)
    assert changed >= 10
    # a roll never changes the set of depth values per row (yaw shift)
    np.testing.assert_allclose(np.sort(d, axis=1), np.sort(depth, axis=1))
    jit = Augment(jitter_prob=1.0, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05)
    colour = rng.uniform(0, 1, (16, 32, 3)).astype(np.float32)
    r, d = augment(colour, depth, np.random.default_rng(3), jit)
    assert np.array_equal(d, depth) and not np.allclose(r, colour) and r.min() >= 0 and r.max() <= 1


def test_appearance_shift_changes_colour_only_and_gain_is_per_channel():
    from dap_model.training.data import appearance_shift

    rng = np.random.default_rng(1)
    depth = rng.uniform(1, 50, (16, 32)).astype(np.float32)
    colour = rng.uniform(0.1, 0.7, (16, 32, 3)).astype(np.float32)
    full = Augment(appearance_prob=1.0, channel_gain=0.3, gamma=1.5, grey_prob=0.5, noise_std=0.05, blur_sigma=1.0)
    for seed in range(4):
        r, d = augment(colour, depth, np.random.default_rng(seed), full)
        assert np.array_equal(d, depth) and not np.allclose(r, colour) and r.min() >= 0 and r.max() <= 1
        r2, _ = augment(colour, depth, np.random.default_rng(seed), full)
        assert np.array_equal(r, r2)
    # gain alone (gamma 1, no grey/noise/blur): out / in is one constant per channel
    gain_only = Augment(appearance_prob=1.0, channel_gain=0.3)
    out = appearance_shift(colour, np.random.default_rng(5), gain_only)
    ratio = out / colour  # [H,W,3]
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[0, 0], ratio.shape), rtol=1e-5)
    assert np.ptp(ratio[0, 0]) > 0.01  # the channels got different gains: a colour cast
    off = Augment(appearance_prob=0.0, channel_gain=0.3, noise_std=0.05)
    assert np.array_equal(augment(colour, depth, np.random.default_rng(0), off)[0], colour)


@pytest.fixture
def store_root(tmp_path):
    return build_store(tmp_path / "store", h=32, n_train=10, shard_size=3)


def _train_paths(root: Path) -> tuple[Path, ...]:
    return tuple(sorted((root / "labeled").glob("train-*.tar")))


def test_stream_restarts_exactly_at_its_data_position(store_root):
    src = [ShardSource("labeled", _train_paths(store_root))]
    stream = ShardStream(src, height=16, seed=3, shuffle_buffer=4, aug=Augment(0.5, 1.0, 0.8, 0.2, 0.2, 0.2, 0.02))
    full = BatchLoader(stream, 3)
    batches = [full.next_batch() for _ in range(7)]  # 21 samples: crosses into epoch 2 (10 per epoch)
    assert full.position == (2, 1)
    resumed = BatchLoader(stream, 3, position=(1, 2))  # after 4 batches = 12 samples
    for b in batches[4:]:
        r = resumed.next_batch()
        assert r["keys"] == b["keys"]
        assert torch.equal(r["rgb"], b["rgb"]) and torch.equal(r["depth"], b["depth"])
    e0 = [k for b in batches[:4] for k in b["keys"]][:10]
    assert sorted(e0) == sorted(f"lab_train_{i:04d}" for i in range(10))  # an epoch is a permutation
    e1 = [k for b in batches for k in b["keys"]][10:20]
    assert e1 != e0  # reshuffled per epoch


@pytest.mark.parametrize("world", [1, 2])
def test_worker_processes_give_the_in_process_batches_and_resume_exactly(store_root, world):
    """2 DataLoader workers per rank: the same batches (bitwise) as decoding in-process, from the
    start and from a mid-epoch position; per rank of `world`."""
    src = [ShardSource("labeled", _train_paths(store_root))]
    aug = Augment(0.5, 1.0, 0.8, 0.2, 0.2, 0.2, 0.02)
    for rank in range(world):
        stream = ShardStream(src, height=16, seed=3, rank=rank, world=world, shuffle_buffer=4, aug=aug)
        inproc = BatchLoader(stream, 3)
        ref, positions = [], []
        for _ in range(5):  # crosses an epoch boundary
            positions.append(inproc.position)
            ref.append(inproc.next_batch())
        for start in (0, 2):
            loader = BatchLoader(stream, 3, positions[start], workers=2)
            for b in ref[start:]:
                r = loader.next_batch()
                assert r["keys"] == b["keys"]
                assert torch.equal(r["rgb"], b["rgb"]) and torch.equal(r["depth"], b["depth"])
            assert loader.position == inproc.position
            loader.close()


@pytest.mark.slow
def test_workers_exit_cleanly_when_closed_with_large_batches_queued(store_root):
    """Closing a loader whose worker still holds 512x1024 batches: the worker exits with code 0
    (a spawned DataLoader worker otherwise often dies of SIGABRT in the interpreter's teardown)."""
    aug = Augment(flip_prob=0.5, roll_prob=1.0, jitter_prob=0.8, brightness=0.3, contrast=0.3, saturation=0.4,
                  hue=0.1, appearance_prob=0.8, channel_gain=0.4, gamma=1.6, grey_prob=0.1, noise_std=0.04, blur_sigma=1.0)
    stream = ShardStream([ShardSource("labeled", _train_paths(store_root))], height=512, seed=0, shuffle_buffer=4, aug=aug)
    codes = []
    for _ in range(3):
        loader = BatchLoader(stream, 2, workers=1, prefetch=4)
        assert loader.next_batch()["rgb"].shape == (2, 3, 512, 1024)
        procs = list(loader._it._workers)  # torch's worker processes
        loader.close()
        for p in procs:
            p.join(30)
        codes += [p.exitcode for p in procs]
    assert codes == [0, 0, 0]


def test_store_keys_are_fetched_lazily_into_the_local_cache(store_root, tmp_path):
    from dap_model.storage import LocalStore

    keys = tuple(p.relative_to(store_root).as_posix() for p in _train_paths(store_root))
    by_key = ShardStream([ShardSource("labeled", keys)], height=16, seed=1, shuffle_buffer=4,
                         store=LocalStore(store_root))
    by_path = ShardStream([ShardSource("labeled", _train_paths(store_root))], height=16, seed=1, shuffle_buffer=4)
    a, b = BatchLoader(by_key, 4, workers=2), BatchLoader(by_path, 4)
    for _ in range(3):
        x, y = a.next_batch(), b.next_batch()
        assert x["keys"] == y["keys"] and torch.equal(x["rgb"], y["rgb"])
    a.close()
    missing = ShardStream([ShardSource("labeled", ("labeled/train-999999.tar",))], height=16,
                          store=LocalStore(store_root))
    with pytest.raises(Exception, match="train-999999"):
        BatchLoader(missing, 1, workers=1).next_batch()


@pytest.mark.parametrize("world", [2, 5])  # 4 shards: split by shard (2) / by sample (5)
def test_ranks_partition_each_epoch(store_root, world):
    src = [ShardSource("labeled", _train_paths(store_root))]
    seen = []
    for rank in range(world):
        s = ShardStream(src, height=16, seed=0, rank=rank, world=world, shuffle_buffer=2)
        seen += [x["key"] for x in s.iter_epoch(0)]
    assert sorted(seen) == sorted(f"lab_train_{i:04d}" for i in range(10))


def test_checkpoints_are_atomic_pruned_and_load_weights_only(tmp_path):
    cfg = load_config("test")
    torch.manual_seed(0)
    np.random.seed(0)
    state = {"step": 3, "rng": [ckpt.rng_state()], "data_positions": [[1, 5]], "optimizer": {"state": {}, "param_groups": []}}
    weights = lambda p: p.write_bytes(b"w")  # noqa: E731
    d = tmp_path / "ck"
    (d / ".step-00000009.abc.tmp").mkdir(parents=True)  # a killed writer's leftover
    for step in (2, 4, 6):
        ckpt.save_checkpoint(d, step, weights, state | {"step": step}, cfg, keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(d)] == [4, 6]
    assert ckpt.clean_temporaries(d) == [d / ".step-00000009.abc.tmp"]
    assert sorted(p.name for p in d.iterdir()) == ["step-00000004", "step-00000006"]
    loaded = ckpt.load_trainer_state(d / "step-00000006")
    assert loaded["step"] == 6 and loaded["data_positions"] == [[1, 5]]
    a = torch.rand(3)
    ckpt.set_rng_state(loaded["rng"][0])
    torch.manual_seed(0)
    assert torch.equal(torch.rand(3), a)
    # a failing weight writer leaves no folder behind
    with pytest.raises(OSError):
        ckpt.save_checkpoint(d, 8, lambda p: (_ for _ in ()).throw(OSError("disk full")), state, cfg, keep=2)
    assert sorted(p.name for p in d.iterdir()) == ["step-00000004", "step-00000006"]
    (d / "step-00000006" / ckpt.STATE_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="unreadable trainer state"):
        ckpt.load_trainer_state(d / "step-00000006")


def _cli_env(project: Path) -> dict:
    env = dict(os.environ, DAP_PROJECT_DIR=str(project), OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _train_cmd(run_dir: Path, steps: int) -> list[str]:
    return [str(Path(sys.executable).with_name("dap")), "train", "--stage", "stage1", "--profile", "test",
            "--set", f"train.steps={steps}", "--set", "train.checkpoint_every=2", "--set", "train.val_every=1000",
            "--set", "train.keep_checkpoints=3", "--run-dir", str(run_dir), "--no-log-model", "--no-progress"]


def _assert_checkpoints_whole(run_dir: Path) -> list[int]:
    from safetensors.torch import load_file

    steps = []
    for step, path in ckpt.list_checkpoints(run_dir / "checkpoints"):
        assert load_file(str(path / ckpt.MODEL_FILE))
        assert ckpt.load_trainer_state(path)["step"] == step
        steps.append(step)
    for p in (run_dir / "checkpoints").iterdir():  # only complete checkpoints carry a final name
        assert p.name.startswith("step-") or (p.name.startswith(".") and p.name.endswith(".tmp"))
    return steps


def _killed_run_resumes_to_the_uninterrupted_weights(cmd, env: dict, tmp_path: Path, steps: int) -> tuple[dict, dict]:
    """`cmd(run_dir)` (a `dap train` command line) runs straight in `tmp_path/straight` and, at the
    same time, in `tmp_path/killed`, SIGKILLed once it has a checkpoint and restarted. Asserts whole
    checkpoints and bitwise-equal final weights; returns the two runs' result lines (killed, straight)."""
    from safetensors.torch import load_file

    killed, straight = tmp_path / "killed", tmp_path / "straight"
    uninterrupted = subprocess.Popen(cmd(straight), env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
    proc = subprocess.Popen(cmd(killed), env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while not ckpt.list_checkpoints(killed / "checkpoints"):
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    at_kill = _assert_checkpoints_whole(killed)
    assert at_kill and max(at_kill) < steps, "the run finished before it was killed"

    out = subprocess.run(cmd(killed), env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["step"] == steps and res["resumed_from_step"] == max(at_kill) > 0
    assert _assert_checkpoints_whole(killed)[-1] == steps
    assert not [p for p in (killed / "checkpoints").iterdir() if p.name.endswith(".tmp")]

    stdout, stderr = uninterrupted.communicate(timeout=600)
    assert uninterrupted.returncode == 0, stderr[-3000:]
    wa = load_file(str(killed / "final" / "model.safetensors"))
    wb = load_file(str(straight / "final" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "resumed weights differ from the uninterrupted run"
    return res, json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_sigkill_midway_then_resume_matches_uninterrupted_run(tmp_path):
    project = tmp_path / "project"
    build_store(project / "data", h=32, n_train=8, shard_size=4)
    res, straight = _killed_run_resumes_to_the_uninterrupted_weights(
        lambda run_dir: _train_cmd(run_dir, 16), _cli_env(project), tmp_path, 16)
    assert straight["checkpoint_sha256"] == res["checkpoint_sha256"]


@pytest.mark.slow
def test_sigkill_midway_then_resume_with_two_loader_workers_matches_uninterrupted_run(tmp_path):
    """2 DataLoader workers: killed and resumed ends bitwise equal to uninterrupted, and both equal
    the in-process loader's weights (the data order does not depend on the worker count)."""
    project = tmp_path / "project"
    build_store(project / "data", h=32, n_train=8, shard_size=4)
    res, straight = _killed_run_resumes_to_the_uninterrupted_weights(
        lambda run_dir: _train_cmd(run_dir, 12) + ["--set", "train.loader_workers=2"], _cli_env(project), tmp_path, 12)
    assert straight["checkpoint_sha256"] == res["checkpoint_sha256"]
    inproc = subprocess.run(_train_cmd(tmp_path / "inproc", 12), env=_cli_env(project), cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert inproc.returncode == 0, inproc.stderr[-3000:]
    assert json.loads(inproc.stdout.strip().splitlines()[-1])["checkpoint_sha256"] == res["checkpoint_sha256"]


def test_cli_bad_input_is_one_clear_line(tmp_path, capsys):
    from dap_model.cli import main

    (tmp_path / "project" / "data").mkdir(parents=True, exist_ok=True)
    assert main(["train", "--stage", "stage1", "--profile", "test", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dap train: error:") and "labelled train shards" in err and "\n" not in err
    assert main(["train", "--stage", "stage1", "--profile", "test", "--set", "train.optimizer=sgd"]) == 2
    assert "train.optimizer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--stage", "stage7"])


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tmp_path):
    """torchrun with 2 gloo processes: one checkpoint with both ranks' data positions, one MLflow run."""
    project = tmp_path / "project"
    build_store(project / "data", h=32, n_train=8, shard_size=2)
    run_dir = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "dap_model.training.launch", "--stage", "stage1", "--profile", "test",
           "--set", "train.steps=2", "--run-dir", str(run_dir), "--no-log-model", "--no-progress"]
    out = subprocess.run(cmd, env=_cli_env(project), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    state = ckpt.load_trainer_state(run_dir / "checkpoints" / "step-00000002")
    assert state["world_size"] == 2 and len(state["data_positions"]) == 2 and len(state["rng"]) == 2
    assert [p[1] for p in state["data_positions"]] == [4, 4]  # 2 steps x batch 2 per rank
    assert len([ln for ln in out.stdout.splitlines() if ln.startswith("{")]) == 1  # rank 0 only


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_training_on_cuda(tmp_path):
    from dap_model.storage import LocalStore
    from dap_model.training.stages import run_stage

    root = build_store(tmp_path / "project" / "data", h=32)
    cfg = load_config("test", ["train.device=cuda", "train.amp_dtype=bf16", "train.steps=3"])
    res = run_stage(cfg, LocalStore(root), "stage1", run_dir=tmp_path / "gpu", progress=False, log_model=False)
    assert res.step == 3 and np.isfinite(res.metrics["train/loss"])


def test_equivariant_prediction_commutes_with_its_yaw_rolls_and_mirror():
    from dap_model.models import build_model
    from dap_model.inference import predict_equivariant

    torch.manual_seed(0)
    cfg = load_config("test", ["model.mask_threshold=1e-6"])
    model = build_model(cfg.model).eval()
    x = torch.rand(2, 3, 32, 64)  # [B,3,H,W]
    one = predict_equivariant(model, x, 1)
    assert torch.allclose(one, model.predict(x), rtol=1e-5, atol=1e-6)
    views = 4  # rolls by 0 and W/2, each plain and mirrored
    avg = predict_equivariant(model, x, views)
    rolled = predict_equivariant(model, torch.roll(x, 32, dims=-1), views)
    torch.testing.assert_close(rolled, torch.roll(avg, 32, dims=-1), rtol=1e-4, atol=1e-4)
    mirrored = predict_equivariant(model, x.flip(-1), views)
    torch.testing.assert_close(mirrored, avg.flip(-1), rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match="pseudo_views"):
        load_config("test", ["curation.pseudo_views=3"])
    assert not torch.allclose(avg, one, rtol=1e-3)  # the views differ: averaging does something


def test_domain_scale_drops_only_pseudo_labels_that_fit_the_other_domain(store_root, tmp_path, monkeypatch):
    import pandas as pd

    from dap_model import layout
    from dap_model.data.shards import iter_shards
    from dap_model.errors import InputError
    from dap_model.models import build_model, save_model
    from dap_model.storage import LocalStore
    from dap_model.training.pseudo import domain_depth_prior, fits_other_domain, pseudo_label_pool

    prior = {"indoor": (np.log(1.7), 0.1), "outdoor": (np.log(30.0), 0.9)}
    assert fits_other_domain(2.0, "outdoor", prior) and fits_other_domain(25.0, "indoor", prior)
    assert not fits_other_domain(2.0, "indoor", prior) and not fits_other_domain(25.0, "outdoor", prior)
    assert not fits_other_domain(0.0, "outdoor", prior) and not fits_other_domain(2.0, "space", prior)

    monkeypatch.setenv("DAP_PROJECT_DIR", str(tmp_path))
    store = LocalStore(store_root)
    torch.manual_seed(0)
    cfg = load_config("test", ["model.mask_threshold=1e-6", "curation.pseudo_views=1"])
    model_file = save_model(build_model(cfg.model), tmp_path / "m.safetensors", cfg.model)
    pool = pd.read_parquet(store_root / layout.POOL_MANIFEST)
    pool["confidence"] = [0.5 if i == 1 else 0.95 for i in range(len(pool))]  # pool[1] is outdoor, unsure
    pool.to_parquet(store_root / layout.POOL_MANIFEST)
    drop_cfg = load_config("test", ["model.mask_threshold=1e-6", "curation.pseudo_views=1", "curation.domain_scale=drop"])
    with pytest.raises(InputError, match="missing columns.*domain"):
        pseudo_label_pool(drop_cfg, store, model_file, layout.pseudo("on"), "stage1", progress=False)
    off = pseudo_label_pool(cfg, store, model_file, layout.pseudo("off"), "stage1", progress=False)
    assert len(off) == len(pool) and off.attrs["excluded"] == 0 and not (store_root / layout.pseudo("off") / "excluded.parquet").exists()
    m0 = float(np.exp(np.log(off["median_depth_m"]).mean()))
    rng = np.random.default_rng(0)
    lab = pd.read_parquet(store_root / layout.LABELED_MANIFEST)
    lab["domain"] = ["indoor" if i % 2 == 0 else "outdoor" for i in range(len(lab))]
    lab["depth_median"] = np.where(lab["domain"] == "indoor", m0, 100 * m0) * np.exp(rng.normal(0, 0.2, len(lab)))
    lab.to_parquet(store_root / layout.LABELED_MANIFEST)
    ref = domain_depth_prior(store)
    train = lab[lab["split"] == "train"]
    for d in ("indoor", "outdoor"):
        logs = np.log(train.loc[train["domain"] == d, "depth_median"])
        assert ref[d] == pytest.approx((logs.mean(), logs.std(ddof=1)))

    # every pseudo-label is at the indoor scale: the confidently tagged outdoor ones are left out
    kept = pseudo_label_pool(drop_cfg, store, model_file, layout.pseudo("on"), "stage1", progress=False)
    dropped = set(pool.loc[pool["domain"] == "outdoor", "key"]) - {pool["key"][1]}
    assert dropped and set(kept["key"]) == set(off["key"]) - dropped and kept.attrs["excluded"] == len(dropped)
    ex = pd.read_parquet(store_root / layout.pseudo("on") / "excluded.parquet")
    assert set(ex["key"]) == dropped and ex["reason"].str.contains("tagged outdoor").all()
    a = {s.key: s.depth for s in iter_shards(sorted((store_root / layout.pseudo("off")).glob("*.tar")))}
    c = {s.key: s.depth for s in iter_shards(sorted((store_root / layout.pseudo("on")).glob("*.tar")))}
    assert set(c) == set(kept["key"])
    for key in c:  # the kept ones are unchanged
        np.testing.assert_array_equal(c[key], a[key])
    pseudo_label_pool(cfg, store, model_file, layout.pseudo("on"), "stage1", progress=False)
    assert not (store_root / layout.pseudo("on") / "excluded.parquet").exists()  # stale list removed with the mode
