import numpy as np
import pytest

from dap_model.data.shards import Sample, ShardWriter, iter_shard, iter_shards
from dap_model.errors import InputError


def _sample(i, with_depth=True):
    rng = np.random.default_rng(i)
    rgb = rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 50, (8, 16)).astype(np.float32) if with_depth else None
    return Sample(key=f"s{i:03d}", rgb=rgb, depth=depth, meta={"i": i})


def test_round_trip_and_sharding(tmp_path):
    samples = [_sample(i, with_depth=i % 2 == 0) for i in range(5)]
    with ShardWriter(tmp_path, "train", shard_size=2) as w:
        for s in samples:
            w.write(s)
    assert w.shards == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    assert [k for _, k in w.written] == [s.key for s in samples]
    back = list(iter_shards(tmp_path / n for n in w.shards))
    for a, b in zip(samples, back):
        assert a.key == b.key and a.meta == b.meta
        np.testing.assert_array_equal(a.rgb, b.rgb)
        if a.depth is None:
            assert b.depth is None
        else:
            np.testing.assert_array_equal(a.depth, b.depth)
    assert [s.key for s in iter_shard(tmp_path / "train-000001.tar", keys=["s003"])] == ["s003"]
    assert not list(tmp_path.glob(".*tmp"))


def test_same_samples_give_identical_bytes(tmp_path):
    for d in ("a", "b"):
        with ShardWriter(tmp_path / d, "x", 4) as w:
            for i in range(3):
                w.write(_sample(i))
    assert (tmp_path / "a/x-000000.tar").read_bytes() == (tmp_path / "b/x-000000.tar").read_bytes()


def test_bad_key_and_corrupt_shard(tmp_path):
    w = ShardWriter(tmp_path, "x", 2)
    with pytest.raises(InputError, match="sample key"):
        w.write(Sample(key="../evil", rgb=np.zeros((2, 4, 3), np.uint8)))
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all" * 10)
    with pytest.raises(InputError, match="bad.tar"):
        list(iter_shard(bad))
