"""One typed definition of every knob.

`DapConfig` is the only place a knob is defined (name, type, default, bounds). The profiles in
`dap_model/profiles/*.yaml` only choose values; CLI `--set a.b=v` and Dagster run config
(`overrides`) only choose values too. No code branches on a profile's name.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dap_model.errors import ConfigError
from dap_model.io import atomic_write_text

PROFILES_DIR = Path(__file__).with_name("profiles")
RESOLVED_CONFIG_NAME = "config.resolved.yaml"


def project_dir() -> Path:
    """The project folder holding the embedded default's state (`data/`, `mlflow.db`, ...)."""
    env = os.environ.get("DAP_PROJECT_DIR")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[1]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class StorageConfig(Section):
    """Bulk data store: a local folder or an S3 bucket (boto3; MinIO through `endpoint_url`).

    Credentials never appear here: boto3 reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the
    environment."""

    backend: Literal["local", "s3"] = "local"
    root: str = Field("data", description="local folder (relative to the project folder)")
    bucket: str = ""
    prefix: str = "dap"
    endpoint_url: str = Field("", description="S3-compatible endpoint (MinIO, moto); empty = AWS")
    region: str = "us-east-1"
    connect_timeout_s: float = Field(5.0, gt=0)
    max_attempts: int = Field(3, ge=1, le=20)


class MlflowConfig(Section):
    tracking_uri: str = Field(
        "", description="empty = $MLFLOW_TRACKING_URI, else sqlite file mlflow.db in the project folder"
    )
    experiment: str = "dap"
    registered_model: str = "dap-depth"
    champion_alias: str = "champion"


class SimConfig(Section):
    """Procedural AirSim360-style renderer (`dap_model.sim`)."""

    scenes: int = Field(4, ge=1)
    frames_per_scene: int = Field(3, ge=1)
    height: int = Field(128, ge=8, description="panorama height in pixels; width = 2 x height")
    kind: Literal["indoor", "outdoor", "mixed"] = "mixed"
    seed: int = 0


class IngestConfig(Section):
    """`labeled_panoramas`: where AirSim360-layout sequences come from and how they are stored."""

    source: str = Field(
        "simulator", description="'simulator', a local folder, or s3://bucket/prefix"
    )
    height: int = Field(128, ge=8, description="stored panorama height; width = 2 x height")
    val_fraction: float = Field(0.15, ge=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)
    shard_size: int = Field(64, ge=1, description="samples per tar shard")
    max_depth_m: float = Field(1000.0, gt=0)


class VideoConfig(Section):
    """Web panoramic video: download, frame sampling, horizon validation."""

    manifest: str = Field("", description="video manifest (CSV/Parquet); empty = generated default")
    sample_every_s: float = Field(1.0, gt=0)
    height: int = Field(128, ge=8)
    max_tilt_deg: float = Field(5.0, gt=0)
    max_download_mb: float = Field(2048.0, gt=0)
    download_timeout_s: float = Field(60.0, gt=0)
    download_retries: int = Field(3, ge=0)


class TaggingConfig(Section):
    backend: str = "builtin"
    model: str = Field("", description="hub id or local path (qwen2-vl backend)")
    batch_size: int = Field(8, ge=1)


class SynthesisConfig(Section):
    backend: str = "builtin"
    images: int = Field(4, ge=0)
    height: int = Field(128, ge=8)


class ModelConfig(Section):
    backbone: str = "vit_small_patch16_dinov3"
    pretrained: str = Field("", description="local path or hub id; empty = random init")
    taps: list[int] = Field(default_factory=lambda: [2, 5, 8, 11])
    max_depth_m: float = Field(100.0, gt=0)


class LossConfig(Section):
    w_silog: float = Field(1.0, ge=0)
    w_df: float = Field(0.4, ge=0)
    w_grad: float = Field(5.0, ge=0)
    w_normal: float = Field(2.0, ge=0)
    w_points: float = Field(2.0, ge=0)
    w_mask: float = Field(2.0, ge=0)


class TrainConfig(Section):
    steps: int = Field(100, ge=1)
    batch_size: int = Field(2, ge=1)
    height: int = Field(128, ge=8)
    lr_backbone: float = Field(5e-6, gt=0)
    lr_decoder: float = Field(5e-5, gt=0)
    seed: int = 0
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")


class CurationConfig(Section):
    top_k_per_domain: int = Field(8, ge=1)


class DistillConfig(Section):
    enabled: bool = False
    weight: float = Field(0.5, ge=0)


class EvalConfig(Section):
    cap_m: float = Field(100.0, gt=0)
    benchmarks: list[str] = Field(default_factory=lambda: ["labeled_test", "web_test"])


class DapConfig(Section):
    profile: str = "tiny"
    storage: StorageConfig = Field(default_factory=StorageConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    sim: SimConfig = Field(default_factory=SimConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    video: VideoConfig = Field(default_factory=VideoConfig)
    tagging: TaggingConfig = Field(default_factory=TaggingConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    curation: CurationConfig = Field(default_factory=CurationConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    def digest(self) -> str:
        """Short content hash of the resolved config (part of data versions)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def flat(self) -> dict[str, Any]:
        """`{"train.steps": 100, ...}`: for MLflow params."""
        out: dict[str, Any] = {}

        def walk(prefix: str, obj: Any) -> None:
            if isinstance(obj, dict):
                for k, v in obj.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                out[prefix] = obj

        walk("", self.model_dump(mode="json"))
        return out


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def _deep_merge(base: dict, patch: dict) -> dict:
    out = dict(base)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config override {dotted!r}: {k!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`"train.steps=10"` → `("train.steps", 10)`; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"config override {text!r}: expected KEY=VALUE, e.g. train.steps=10")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"config override {text!r}: empty key")
    return key, yaml.safe_load(raw) if raw.strip() else ""


def _format_validation_error(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        parts.append(f"{loc}: {e['msg']} (got {e.get('input')!r})")
    return "invalid config: " + "; ".join(parts)


def load_config(
    profile: str | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
) -> DapConfig:
    """Defaults ← profile YAML ← overrides (dotted keys). Raises ConfigError naming the field."""
    profile = profile or os.environ.get("DAP_PROFILE") or "tiny"
    path = PROFILES_DIR / f"{profile}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"unknown profile {profile!r}; available: {', '.join(available_profiles())}"
        )
    tree = yaml.safe_load(path.read_text()) or {}
    tree["profile"] = profile
    pairs: list[tuple[str, Any]]
    if overrides is None:
        pairs = []
    elif isinstance(overrides, dict):
        pairs = list(overrides.items())
    else:
        pairs = [parse_override(o) for o in overrides]
    patch: dict = {}
    for key, value in pairs:
        _set_dotted(patch, key, value)
    tree = _deep_merge(tree, patch)
    try:
        return DapConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err)) from None


def write_resolved_config(cfg: DapConfig, out_dir: str | Path) -> Path:
    """Write the fully resolved config next to an output (`<out_dir>/config.resolved.yaml`)."""
    out = Path(out_dir) / RESOLVED_CONFIG_NAME
    atomic_write_text(out, cfg.to_yaml())
    return out
