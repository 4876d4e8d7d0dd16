"""The storage layout: every data-store key is named in `dap_model.layout`, nowhere else."""

from __future__ import annotations

import ast
from pathlib import Path

from dap_model import layout
from dap_model.config import DapConfig

ROOT = Path(__file__).resolve().parents[1]
LAYOUT_FILE = ROOT / "dap_model" / "layout.py"


# functions and store methods whose arguments are store keys or prefixes
KEY_TAKERS = {"list", "exists", "fetch", "uri", "get_bytes", "put_bytes", "put_file", "delete", "path", "store_hash",
              "store_version", "split_shard_keys", "manifest_shard_keys", "replace_prefix", "pseudo_label_pool",
              "simulate_to_store", "join", "manifest", "resolved_config"}


def key_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of string constants (f-string parts included) that start with a store prefix,
    and of top-level prefixes (`"labeled"`) passed to a function that takes a key."""
    starts = tuple(f"{top}/" for top in layout.TOP_LEVEL)
    found = []
    for n in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.startswith(starts):
            found.append((n.lineno, n.value))
        elif isinstance(n, ast.Call):
            name = n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
            found += [(a.lineno, a.value) for a in n.args
                      if name in KEY_TAKERS and isinstance(a, ast.Constant) and a.value in layout.TOP_LEVEL]
    return sorted(found)


def product_files() -> list[Path]:
    files = sorted(p for pkg in ("dap_model", "dap_assets") for p in (ROOT / pkg).rglob("*.py"))
    assert len(files) > 50 and LAYOUT_FILE in files
    return [p for p in files if p != LAYOUT_FILE]


def test_no_store_key_literal_outside_layout():
    found = [f"{p.relative_to(ROOT)}:{line}: {text!r}" for p in product_files() for line, text in key_literals(p)]
    assert not found, "store keys spelled outside dap_model/layout.py:\n" + "\n".join(found)


def test_the_check_sees_a_key_literal(tmp_path):
    src = tmp_path / "m.py"
    src.write_text('a = "pseudo/stage1"\nb = f"web/frames/{vid}"\nc = "depth-anything/x"\nd = "labeled"\n'
                   'e = store.list("labeled")\nf = f"{store.uri(\'distill\')}"\ng = source("labeled")\n')
    assert key_literals(src) == [(1, "pseudo/stage1"), (2, "web/frames/"), (5, "labeled"), (6, "distill")]


def test_keys_keep_their_stored_values():
    """Data already in a store is found under the same keys."""
    assert layout.LABELED_MANIFEST == "labeled/manifest.parquet"
    assert layout.LABELED_TEST_SHARDS == "labeled/test-*.tar"
    assert layout.WEB_TEST_SHARDS == "web/test/*.tar"
    assert layout.WEB_DEFAULT_MANIFEST == "web/default/manifest.csv"
    assert layout.WEB_MANIFEST == "web/manifest.parquet"
    assert layout.web_frames("v1") == "web/frames/v1"
    assert layout.web_frames_manifest("v1") == "web/frames/v1/frames.parquet"
    assert layout.web_video("v1", "mp4") == "web/videos/v1.mp4" and layout.web_video_sidecar("v1") == "web/videos/v1.json"
    assert layout.web_default_video("web-rooms-000") == "web/default/videos/web-rooms-000.mp4"
    assert layout.SYNTH_MANIFEST == "synth/manifest.parquet" and layout.WITHHELD_GT == ("web/gt", "synth/gt")
    assert (layout.POOL_TAGS, layout.POOL_MANIFEST) == ("pool/scene_tags.parquet", "pool/manifest.parquet")
    assert layout.model_key("stage2") == "models/stage2/model.safetensors"
    assert layout.DISCRIMINATOR_KEY == "models/discriminator/model.safetensors"
    assert layout.CURATION_SCORES == "curation/scores.parquet"
    assert (layout.PSEUDO_STAGE1, layout.PSEUDO_CURATED, layout.PSEUDO_STAGE2) == (
        "pseudo/stage1", "pseudo/curated", "pseudo/stage2")
    assert layout.DISTILL_MANIFEST == "distill/manifest.parquet" and layout.AIRSIM360 == "airsim360"
    assert layout.resolved_config(layout.SYNTH) == "synth/config.resolved.yaml"


def test_benchmark_defaults_use_the_layout():
    specs = DapConfig().eval.benchmarks
    assert specs["labeled_test"].pattern == layout.LABELED_TEST_SHARDS
    assert specs["web_test"].pattern == layout.WEB_TEST_SHARDS


def test_every_key_is_a_safe_store_key():
    from dap_model.storage import safe_key

    keys = [v for n, v in vars(layout).items() if n.isupper() and isinstance(v, str) and "/" in v]
    keys += list(layout.TOP_LEVEL) + list(layout.WITHHELD_GT)
    assert len(keys) > 20
    for key in keys:
        assert safe_key(key) == key and key.split("/")[0] in layout.TOP_LEVEL, key


def test_every_key_is_documented():
    """Each constant and function of the layout carries a one-line comment or docstring."""
    src = LAYOUT_FILE.read_text().splitlines()
    tree = ast.parse("\n".join(src))
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            assert "#" in src[node.end_lineno - 1], f"layout.{node.targets[0].id}: no comment"
        elif isinstance(node, ast.FunctionDef):
            assert ast.get_docstring(node), f"layout.{node.name}(): no docstring"
