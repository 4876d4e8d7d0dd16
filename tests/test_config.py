import re
from pathlib import Path

import pytest
import yaml

from dap_model.config import (
    DapConfig,
    available_profiles,
    load_config,
    write_resolved_config,
)
from dap_model.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_every_profile_loads_and_only_chooses_values():
    assert {"test", "tiny", "small", "full"} <= set(available_profiles())
    for name in available_profiles():
        cfg = load_config(name)
        assert cfg.profile == name
        # a profile file may only contain known sections/knobs (extra=forbid enforces it)
        tree = yaml.safe_load((ROOT / "dap_model" / "profiles" / f"{name}.yaml").read_text()) or {}
        assert set(tree) <= set(DapConfig.model_fields)


def test_profiles_choose_different_sizes():
    assert load_config("test").train.height < load_config("full").train.height
    assert load_config("full").model.taps == [4, 11, 17, 23]


def test_overrides_from_strings_and_dicts():
    cfg = load_config("test", ["train.steps=7", "model.taps=[1, 2]", "storage.backend=s3"])
    assert cfg.train.steps == 7 and cfg.model.taps == [1, 2] and cfg.storage.backend == "s3"
    assert load_config("test", {"train.steps": 9}).train.steps == 9


@pytest.mark.parametrize(
    "override, field",
    [
        ("train.steps=-1", "train.steps"),
        ("train.steps=abc", "train.steps"),
        ("storage.backend=ftp", "storage.backend"),
        ("train.nonsense=1", "train.nonsense"),
    ],
)
def test_invalid_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=re.escape(field)):
        load_config("test", [override])


def test_unknown_profile_and_malformed_override():
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load_config("nope")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config("test", ["train.steps"])


def test_env_profile(monkeypatch):
    monkeypatch.setenv("DAP_PROFILE", "small")
    assert load_config().profile == "small"


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("test", ["train.steps=3"])
    path = write_resolved_config(cfg, tmp_path / "out")
    again = DapConfig.model_validate(yaml.safe_load(path.read_text()))
    assert again == cfg and again.digest() == cfg.digest()
    assert cfg.flat()["train.steps"] == 3


def test_no_code_branches_on_a_profile_name():
    names = "|".join(available_profiles())
    pattern = re.compile(rf"profile\s*(==|!=|in)\s*[\[\(]?\s*['\"]({names})['\"]")
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for pkg in ("dap_model", "dap_assets")
        for p in (ROOT / pkg).rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_on_off_yes_no_stay_strings_and_booleans_still_parse():
    cfg = load_config("test", ["curation.domain_scale=off", "distill.enabled=true"])
    assert cfg.curation.domain_scale == "off" and cfg.distill.enabled is True
    assert load_config("test", ["distill.enabled=false"]).distill.enabled is False
    assert load_config("test", ["distill.enabled=on"]).distill.enabled is True  # pydantic reads "on"
