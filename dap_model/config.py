"""One typed definition of every knob.

`DapConfig` is the only place a knob is defined (name, type, default, bounds). The profiles in
`dap_model/profiles/*.yaml` only choose values; CLI `--set a.b=v` and Dagster run config
(`overrides`) only choose values too. No code branches on a profile's name.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError, field_validator

from dap_model import layout
from dap_model.errors import ConfigError
from dap_model.io import atomic_write_text
from dap_model.layout import RESOLVED_CONFIG_NAME  # noqa: F401  (config.RESOLVED_CONFIG_NAME)

PROFILES_DIR = Path(__file__).with_name("profiles")


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

    scenes: int = Field(4, ge=1, le=100000, description="sequences (one procedural scene each)")
    frames_per_scene: int = Field(3, ge=1, le=10000)
    height: int = Field(128, ge=8, le=4096, description="panorama height in pixels; width = 2 x height")
    kind: Literal["indoor", "outdoor", "mixed"] = Field(
        "mixed", description="mixed interleaves indoor and outdoor sequences (`indoor_share` of them indoor)"
    )
    indoor_share: float = Field(
        0.5, ge=0, le=1, description="mixed: fraction of the sequences that are indoor, spread evenly over the sequence order"
    )
    scene: Literal["procedural", "calibration"] = Field(
        "procedural", description="calibration: an infinite ground plane under an empty sky"
    )
    camera_height_m: float = Field(
        1.7, gt=0, le=1000, description="calibration scene: camera height above the ground plane"
    )
    seed: int = Field(0, ge=0)
    style: Literal["labeled", "web"] = Field("labeled", description="appearance of the rendered set")
    shadows: bool = Field(True, description="sun shadows outdoors (one shadow ray per lit pixel)")
    weather: Literal["clear", "varied"] = Field(
        "clear", description="labelled style's sky and light: clear = one clear midday sky; varied = time of day "
        "(sun 3-70 deg), overcast, sky colour and haze drawn per scene (AirSim's weather / time-of-day settings)"
    )
    max_depth_m: float = Field(
        1000.0, gt=0, le=100000, description="depth sensor range: farther surfaces are stored as 0 (invalid)"
    )
    threads: int = Field(
        1, ge=0, le=256,
        description="torch threads per rendering process (0 = leave as is); 1 is fastest on a shared CPU, "
        "scale with `workers` instead",
    )
    workers: int = Field(1, ge=1, le=256, description="processes rendering sequences in parallel")


class IngestConfig(Section):
    """`labeled_panoramas`: where AirSim360-layout sequences come from and how they are stored."""

    source: str = Field(
        "simulator", description="'simulator', a local folder, or s3://bucket/prefix"
    )
    height: int = Field(128, ge=8, description="stored panorama height; width = 2 x height")
    val_fraction: float = Field(0.15, ge=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)
    shard_size: int = Field(64, ge=1, description="samples per tar shard")
    max_depth_m: float = Field(1000.0, gt=0, description="depth above this (metres) rejects the pair")
    default_domain: Literal["indoor", "outdoor"] = Field(
        "outdoor", description="domain of a sequence whose meta.json does not say"
    )
    depth_resize: Literal["nearest", "edge_aware"] = Field(
        "edge_aware", description="edge_aware: per output pixel, the valid source depth nearest the block median"
    )
    min_valid_fraction: float = Field(0.01, ge=0, le=1, description="pairs with less valid depth are skipped")
    blank_std: float = Field(1.0, ge=0, description="RGB with a pixel std below this (0-255) is blank")
    split_seed: int = Field(0, ge=0, description="seed of the by-sequence train/val/test split")
    endpoint_url: str = Field("", description="S3 endpoint of an s3:// source; empty = storage.endpoint_url")
    read_threads: int = Field(8, ge=1, le=64, description="pairs read (and resized) concurrently from the source")


class VideoConfig(Section):
    """Web panoramic video: download, frame sampling, horizon validation."""

    manifest: str = Field(
        "", description="video manifest (CSV/Parquet; local path, file:// or s3://); empty = generated default"
    )
    sample_every_s: float = Field(1.0, gt=0, description="seconds between sampled frames")
    height: int = Field(128, ge=8, description="stored frame height; width = 2 x height")
    max_tilt_deg: float = Field(5.0, gt=0, description="horizon check: largest accepted camera tilt")
    max_download_mb: float = Field(2048.0, gt=0)
    download_timeout_s: float = Field(60.0, gt=0, description="socket timeout per request")
    download_retries: int = Field(3, ge=0, description="extra attempts after a transient failure")
    retry_backoff_s: float = Field(2.0, ge=0, description="first retry delay; doubles each attempt")
    s3_endpoint_url: str = Field("", description="endpoint for s3:// sources; empty = storage.endpoint_url")
    max_frames_per_video: int = Field(0, ge=0, description="0 = no limit")
    dedup_threshold: float = Field(
        2.0, ge=0, description="drop a frame whose 32x16 grey thumbnail differs from the last kept one "
        "by less than this mean absolute difference (grey levels); 0 = keep all"
    )
    horizon_height: int = Field(128, ge=32, le=1024, description="frame height the horizon check works at")
    min_brightness: float = Field(10.0, ge=0, le=255, description="darker mean grey level = 'dark'")
    min_contrast: float = Field(4.0, ge=0, description="lower grey-level std = 'blank'")
    seam_tolerance: float = Field(
        0.5, gt=0, description="seam difference on a scale from neighbouring (0) to unrelated columns (1)"
    )
    pole_max_variation: float = Field(1.0, gt=0, description="fine detail along pole rows / along ordinary rows")
    stereo_min_similarity: float = Field(0.8, gt=-1, le=1, description="NCC of the two eyes for stereo")
    cap_max_std: float = Field(
        3.0, ge=0, description="pole caps: rows whose grey level varies less along the row are fill (valid_lat_*)"
    )
    aspect_tolerance: float = Field(0.03, gt=0, lt=0.5)
    shard_size: int = Field(64, ge=1, description="frames per tar shard")
    bucket_size: int = Field(
        100, ge=1, description="videos per ingest bucket (one Dagster partition of web_videos/web_frames): "
        "250,000 videos make 2,500 partitions; a change applies to buckets opened afterwards"
    )
    bucket_workers: int = Field(
        2, ge=1, description="videos of one bucket processed at once: download threads, then frame-extraction processes"
    )
    pool_videos: int = Field(4, ge=0, description="generated default: videos in the manifest")
    test_videos: int = Field(2, ge=0, description="generated default: held-out web-test videos")
    video_duration_s: float = Field(6.0, gt=0, description="generated default: seconds per video")
    video_fps: float = Field(8.0, gt=0, le=60, description="generated default: frames per second")
    seed: int = 0


class TaggingConfig(Section):
    """Indoor/outdoor scene tags (`dap_model.tagging`; backends `builtin`, `qwen2-vl`)."""

    backend: str = Field("builtin", description="tagger backend (registry name)")
    model: str = Field("", description="hub id or local path (qwen2-vl backend)")
    batch_size: int = Field(8, ge=1)
    prompt: str = Field(
        "This is a 360-degree equirectangular panorama. Was it taken indoors or outdoors? "
        "Answer with one word: indoor or outdoor.",
        description="qwen2-vl: user question; the answer is read from the next-token probabilities",
    )
    indoor_answers: list[str] = Field(
        default_factory=lambda: ["indoor", "Indoor", " indoor", "indoors", "Indoors"],
        description="qwen2-vl: spellings whose first token counts as 'indoor'",
    )
    outdoor_answers: list[str] = Field(
        default_factory=lambda: ["outdoor", "Outdoor", " outdoor", "outdoors", "Outdoors"],
        description="qwen2-vl: spellings whose first token counts as 'outdoor'",
    )
    min_answer_mass: float = Field(
        0.0, ge=0, le=1,
        description="qwen2-vl: fail (ok=False) a frame whose answer tokens get less total probability",
    )
    max_pixels: int = Field(448 * 896, ge=56 * 56, description="qwen2-vl: image resized to at most this many pixels")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="auto = bfloat16 on CUDA, float32 on CPU"
    )
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    builtin_coefficients: str = Field(
        "", description="builtin: coefficient JSON (empty = dap_model/tagging/builtin_coefficients.json)"
    )


class RealSource(Section):
    """A local folder of real, unlabelled 360° material for the pool (`dap_model/real_pool.py`)."""

    path: str = Field(..., min_length=1, description="folder (relative = to the project folder); missing = skipped with a logged reason")
    kind: Literal["images", "videos"] = Field(
        ..., description="images: ERP 2:1 jpg/png, searched recursively; videos: 360° video files, through the web-video frame path"
    )


class PoolConfig(Section):
    """The unlabelled pool's candidates beyond web video and synthesis."""

    real_sources: list[RealSource] = Field(
        default_factory=list, description="real panoramas and videos added to the pool (stored under real/, tagged "
        "like web frames, sized by video.height); empty = web frames and synthesised images only"
    )
    real_max_files: int = Field(
        0, ge=0, description="images or videos read per real source, first by relative path; 0 = all"
    )


class SynthesisConfig(Section):
    """Indoor panorama synthesis (`dap_model.synthesis`; backends `builtin`, `dit360`)."""

    backend: str = Field("builtin", description="synthesis backend (registry name)")
    images: int = Field(4, ge=0)
    height: int = Field(128, ge=8, description="output panorama height; width = 2 x height")
    seed: int = 0
    shard_size: int = Field(64, ge=1, description="samples per tar shard under synth/")
    prompts: list[str] = Field(
        default_factory=lambda: [
            "a 360 degree equirectangular panorama of a cozy living room with a sofa, wooden floor and warm lamps",
            "a 360 degree equirectangular panorama of a modern open-plan kitchen with an island and pendant lights",
            "a 360 degree equirectangular panorama of a bright office with desks, chairs and large windows",
            "a 360 degree equirectangular panorama of a bedroom with a double bed, wardrobe and rug",
            "a 360 degree equirectangular panorama of a museum gallery hall with paintings on white walls",
            "a 360 degree equirectangular panorama of a hotel lobby with marble floor and reception desk",
            "a 360 degree equirectangular panorama of a classroom with rows of desks and a whiteboard",
            "a 360 degree equirectangular panorama of an industrial warehouse interior with shelves",
        ],
        description="dit360: indoor prompts, used in turn",
    )
    dit360_base: str = Field("black-forest-labs/FLUX.1-dev", description="dit360: FLUX base pipeline (hub id or path)")
    dit360_lora: str = Field(
        "fenghora/DiT360-Panorama-Image-Generation", description="dit360: LoRA (hub id or path); empty = none"
    )
    dit360_steps: int = Field(28, ge=1)
    dit360_guidance: float = Field(2.8, ge=0)
    dit360_max_sequence_length: int = Field(512, ge=1, le=512)
    dit360_roll_latents: bool = Field(
        True, description="dit360: roll the latent horizontally between denoising steps (seam moves)"
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="auto = bfloat16 on CUDA, float32 on CPU"
    )
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    seam_band_frac: float = Field(
        0.03, ge=0, le=0.5, description="width of the seam-blend band on each side, as a fraction of W"
    )


class ModelConfig(Section):
    """The DAP network (`dap_model.models`): backbone + two distortion-aware DPT heads."""

    architecture: Literal["dap", "dap_release"] = Field(
        "dap", description="dap = this project's network; dap_release = DAP's released network "
        "(docs/release.md), normally read from a release file rather than set by hand"
    )
    backbone: str = Field(
        "vit_small_patch16_dinov3",
        description="registry name (dap_model.models.available_backbones()): timm vit_*_dinov3, "
        "vit_tiny/vit_test shrunk DINOv3, hf_dinov3_*/hf_dinov2_* (transformers)",
    )
    backbone_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="architecture overrides: timm create_model kwargs or transformers config fields",
    )
    pretrained: str = Field(
        "", description="local file/folder or hub id; empty = random init (a hub id that cannot "
        "be fetched is an error, never a silent random init)"
    )
    taps: list[int] = Field(
        default_factory=lambda: [2, 5, 8, 11],
        description="0-based transformer blocks feeding the DPT decoder (exactly 4)",
    )
    tap_norm: bool = Field(True, description="apply the backbone's final norm to tapped tokens (DAv2)")
    max_depth_m: float = Field(100.0, gt=0, description="depth = sigmoid(head) x max_depth_m")
    decoder_features: int = Field(64, ge=4, description="DPT fusion width (DAv2: 64 ViT-S, 256 ViT-L)")
    decoder_channels: list[int] = Field(
        default_factory=lambda: [48, 96, 192, 384],
        description="DPT reassemble widths per tap (DAv2: ViT-S 48/96/192/384, ViT-L 256/512/1024/1024)",
    )
    head_hidden: int = Field(32, ge=1, description="channels of the last 3x3 conv of each head")
    shared_decoder: bool = Field(
        False, description="False: depth and mask each get a full DPT decoder (DAP); "
        "True: one fusion path, two output heads"
    )
    circular_padding: bool = Field(True, description="wrap decoder convs/resizes across the ±180° seam")
    vertical_padding: Literal["replicate", "zeros"] = Field(
        "replicate", description="padding at the poles (top/bottom rows) in decoder convs"
    )
    latitude_encoding: Literal["none", "concat", "film", "concat+film"] = Field(
        "concat", description="latitude awareness: concat (sin lat, cos lat) channels before the "
        "reassemble and head convs; film = learned per-row scale/shift after each fusion block"
    )
    mask_ranges_m: list[float] = Field(
        default_factory=lambda: [100.0],
        description="range-mask thresholds (one mask channel each, target = valid & gt <= r)",
    )
    mask_threshold: float = Field(
        0.5, gt=0, lt=1, description="inference rule: depth := 0 (invalid/sky) where "
        "sigmoid(mask logit of the largest range) < this"
    )
    grad_checkpointing: bool = Field(False, description="activation checkpointing in the backbone")


class LossConfig(Section):
    """DAP's six losses (`dap_model.losses.DapLoss`); weights are the paper's."""

    w_silog: float = Field(1.0, ge=0)
    w_df: float = Field(0.4, ge=0)
    w_grad: float = Field(5.0, ge=0)
    w_normal: float = Field(2.0, ge=0)
    w_points: float = Field(2.0, ge=0)
    w_mask: float = Field(2.0, ge=0)
    distortion_weight: Literal["solid_angle", "none"] = Field(
        "solid_angle", description="per-pixel ERP weight: cos(lat) solid angle (normalised) or uniform"
    )
    silog_lambda: float = Field(0.5, ge=0, le=1, description="SILog variance weight (DAv2 metric: 0.5)")
    min_depth_m: float = Field(1e-3, gt=0, description="predictions clamped below this before log")
    df_fov_deg: float = Field(
        80.0, gt=0, lt=180, description="FOV of the 12 icosahedron-vertex views (>= 74.8 covers the sphere)"
    )
    df_size: int = Field(0, ge=0, description="DF view side in pixels; 0 = round(H * fov / 180)")
    grad_edge_threshold: float = Field(
        4.0, gt=0, description="Sobel |grad log gt| per radian above which a pixel is an edge "
        "(tan of the incidence angle on a plane; 4 = 76 deg; depth steps exceed it at any resolution)"
    )
    mask_loss: Literal["bce_dice", "mse_dice"] = Field("bce_dice", description="range-mask loss form")
    mask_invalid_as_negative: bool = Field(
        True, description="invalid gt (sky/no return) is a mask negative; False = ignored"
    )


class DiscriminatorConfig(Section):
    """PatchGAN depth-quality discriminator (`dap_model.models.discriminator`)."""

    base_channels: int = Field(32, ge=1)
    n_layers: int = Field(3, ge=1, description="stride-2 conv layers (receptive field grows 2x each)")
    norm: Literal["instance", "batch", "group", "none"] = "instance"
    spectral_norm: bool = False
    circular_padding: bool = True
    gan_loss: Literal["hinge", "bce"] = "hinge"
    depth_range_m: list[float] = Field(
        default_factory=lambda: [0.1, 100.0],
        description="[min, max] of the log-depth input normalisation (to [-1, 1])",
    )


class TrainConfig(Section):
    """`dap_model.training`: the three trainings (stage 1, 2, 3) share these knobs."""

    steps: int = Field(100, ge=1, description="optimiser steps per training")
    batch_size: int = Field(2, ge=1, description="samples per micro-batch per process")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimiser step")
    threads: int = Field(
        0, ge=0, description="CPU intra-op threads for training/inference (0 = torch's default); "
        "1 measured 12x faster than 2 for the tiny model on a loaded 2-core machine"
    )
    height: int = Field(128, ge=8, description="training panorama height; width = 2 x height")
    optimizer: Literal["adam", "adamw"] = "adam"
    lr_backbone: float = Field(5e-6, gt=0)
    lr_decoder: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, ge=0, description="max global grad norm; 0 = off")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up from 0 to the base lr")
    decay: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final lr as a fraction of the base lr")
    amp_dtype: Literal["bf16", "fp16", "fp32"] = Field("bf16", description="autocast dtype on CUDA (CPU runs fp32)")
    seed: int = 0
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    checkpoint_every: int = Field(50, ge=1, description="steps between checkpoints")
    keep_checkpoints: int = Field(2, ge=1)
    val_every: int = Field(50, ge=1, description="steps between validations on the labelled val split")
    val_samples: int = Field(32, ge=1, description="labelled val samples per validation")
    eval_batch_size: int = Field(4, ge=1)
    log_every: int = Field(1, ge=1, description="steps between training-metric logs")
    log_images: int = Field(3, ge=0, description="RGB | GT | pred images logged per validation")
    shuffle_buffer: int = Field(64, ge=1, description="samples in the streaming shuffle buffer")
    loader_workers: int = Field(
        0, ge=0, le=256, description="DataLoader worker processes decoding and augmenting training samples "
        "(0 = in the training process); the data order is the same for every value"
    )
    labeled_repeat: int = Field(1, ge=1, description="times the labelled shards appear per epoch next to pseudo-labels")
    init_from: str = Field(
        "", description="start every training from this checkpoint: a DAP release model.pth or a "
        "model.safetensors (its network replaces the model section); empty = model.pretrained"
    )
    init_from_previous: bool = Field(
        False, description="stage 2/3 start from the previous stage's weights (off: every stage has the same budget from the same init)"
    )
    run_root: str = Field("runs", description="training folders (checkpoints) relative to the project folder")
    aug_flip_prob: float = Field(0.5, ge=0, le=1, description="horizontal flip (mirror) probability")
    aug_roll_prob: float = Field(1.0, ge=0, le=1, description="horizontal roll (random yaw) probability")
    aug_jitter_prob: float = Field(0.8, ge=0, le=1, description="colour-jitter probability")
    aug_brightness: float = Field(0.3, ge=0, lt=1)
    aug_contrast: float = Field(0.3, ge=0, lt=1)
    aug_saturation: float = Field(0.4, ge=0, lt=1)
    aug_hue: float = Field(0.1, ge=0, le=0.5, description="hue shift as a fraction of the colour wheel")
    aug_appearance_prob: float = Field(
        0.8, ge=0, le=1, description="probability of the appearance shift (channel gain, gamma, grey, noise, blur)"
    )
    aug_channel_gain: float = Field(0.4, ge=0, lt=1, description="per-channel gain uniform in 1 ± this (colour cast)")
    aug_gamma: float = Field(1.6, ge=1, description="gamma log-uniform in [1/this, this]")
    aug_grey_prob: float = Field(0.1, ge=0, le=1, description="greyscale probability within the appearance shift")
    aug_noise_std: float = Field(0.04, ge=0, le=0.5, description="Gaussian sensor-noise std uniform in [0, this] (0-1 scale)")
    aug_blur_sigma: float = Field(1.0, ge=0, description="Gaussian blur sigma uniform in [0, this] pixels")


class CurationConfig(Section):
    """Pseudo-labelling and the discriminator-based selection (`dap_model.training.curation`)."""

    top_k_per_domain: int = Field(8, ge=1)
    selection: Literal["discriminator", "random"] = Field(
        "discriminator", description="'random' = the control: K random samples per domain"
    )
    seed: int = 0
    pseudo_views: int = Field(
        4, ge=1, le=64, description="pseudo-labels averaged over views/2 yaw rolls x (plain, mirrored); 1 = one pass, else even"
    )
    disc_steps: int = Field(200, ge=1, description="discriminator training steps")
    disc_batch_size: int = Field(8, ge=1)
    disc_lr: float = Field(2e-4, gt=0)
    domain_scale: Literal["off", "drop"] = Field(
        "off", description="drop = leave out a pseudo-label whose median depth fits another domain of the labelled "
        "set better than its tagged one (labeler and tagger disagree); listed in excluded.parquet"
    )
    domain_scale_min_confidence: float = Field(
        0.8, ge=0, le=1, description="domain_scale acts only on pool samples tagged with at least this confidence"
    )

    @field_validator("pseudo_views")
    @classmethod
    def _one_or_even(cls, v: int) -> int:
        if v != 1 and v % 2:
            raise ValueError(f"must be 1 or even (yaw rolls x plain/mirrored), got {v}")
        return v


class DistillConfig(Section):
    """Depth Anywhere: a perspective teacher on randomly rotated cube faces of pool panoramas,
    sky/watermark masked, as an extra affine-invariant disparity loss (`dap_model.distill`)."""

    enabled: bool = Field(False, description="add the distillation term in the stages listed in `stages`")
    weight: float = Field(0.5, ge=0, description="weight of the distillation term in the objective")
    labeled_weight: float = Field(0.5, ge=0, description="weight of the labelled (DAP) loss when the term is on")
    stages: list[str] = Field(
        default_factory=lambda: ["stage1", "stage2", "stage3"], description="trainings that add the term"
    )
    unlabeled_fraction: float = Field(
        0.5, gt=0, lt=1, description="share of each batch drawn from perspective_pseudo_labels"
    )
    teacher: str = Field("depth-anything", description="teacher backend (registry: depth-anything | dap)")
    teacher_model: str = Field(
        "", description="depth-anything: hub id or local folder; dap: checkpoint file or models/<stage> "
        "store key; empty = dap: the store's models/stage3 model"
    )
    teacher_input_size: int = Field(518, ge=14, description="depth-anything: faces resized to this square size (multiple of 14)")
    teacher_batch_size: int = Field(12, ge=1, description="faces per teacher forward pass")
    mask: str = Field("builtin", description="sky/watermark mask backend (registry: builtin | grounded-sam | none)")
    detector_model: str = Field("IDEA-Research/grounding-dino-base", description="grounded-sam: GroundingDINO id/path")
    segmenter_model: str = Field("facebook/sam-vit-huge", description="grounded-sam: SAM id/path")
    prompts: list[str] = Field(default_factory=lambda: ["sky", "watermark"], description="grounded-sam: masked phrases")
    box_threshold: float = Field(0.3, gt=0, lt=1, description="grounded-sam: GroundingDINO box score")
    text_threshold: float = Field(0.25, gt=0, lt=1, description="grounded-sam: GroundingDINO text score")
    sky_min_brightness: float = Field(0.55, ge=0, le=1, description="builtin: sky pixels are at least this bright (max RGB)")
    sky_max_gradient: float = Field(0.04, ge=0, description="builtin: sky pixels' mean |Sobel| of grey (per pixel, 0-1 scale)")
    sky_min_lat_deg: float = Field(
        10.0, ge=-90, le=90, description="builtin: a sky region touches the top row and its mean latitude is above this"
    )
    watermark_min_frames: int = Field(4, ge=2, description="builtin: frames of one video needed to find static overlays")
    watermark_max_std: float = Field(0.02, ge=0, description="builtin: colour std over a video's frames below which a pixel is static")
    watermark_max_fraction: float = Field(
        0.1, gt=0, le=1, description="builtin: a larger static area means a static camera, not an overlay (nothing masked)"
    )
    rotations: int = Field(2, ge=1, description="K random rotations per panorama")
    max_rotation_deg: float = Field(45.0, ge=0, le=180, description="rotation angles uniform in ±this, per Euler angle")
    face_ratio: float = Field(0.5, gt=0, le=2, description="cube-face side = round(face_ratio x train.height) (Depth Anywhere: H/2)")
    min_valid_fraction: float = Field(0.2, ge=0, le=1, description="faces (and rotations) with less valid teacher output are dropped")
    seed: int = 0


class BenchmarkSpec(Section):
    """One benchmark: an explicit reader format (`dap_model.benchmarks.available_formats()`) and
    its root. Layouts per format: docs/evaluation.md."""

    format: str = Field(..., description="stanford2d3d | matterport3d | matterport3d_png | deep360 | airsim360 | npy | shards")
    root: str = Field(
        "", description="local folder (relative = to the project folder) or s3://bucket/prefix; "
        "empty = the data store (storage.*), which only the `shards` format uses; other formats "
        "with an empty or missing root are skipped with the reason in the report"
    )
    pattern: str = Field("", description="shards: fnmatch pattern of shard keys under the root")
    by_folder: bool = Field(
        False, description="also score each top-level sub-folder of the root on its own "
        "(report rows `<name>/<folder>`, MLflow `<name>/<folder>/<metric>`)"
    )


def _default_benchmarks() -> dict[str, BenchmarkSpec]:
    return {
        "labeled_test": BenchmarkSpec(format="shards", pattern=layout.LABELED_TEST_SHARDS),
        "web_test": BenchmarkSpec(format="shards", pattern=layout.WEB_TEST_SHARDS),
    }


class EvalConfig(Section):
    """Benchmark evaluation, inference, reports and the champion gate (`dap_model.evaluation`,
    `dap_model.inference`)."""

    cap_m: float = Field(100.0, gt=0, description="valid ground truth: 0 < gt <= cap_m (DAP)")
    benchmarks: dict[str, BenchmarkSpec] = Field(
        default_factory=lambda: _default_benchmarks(),
        description="name -> {format, root, pattern, by_folder}; entries are added to the defaults "
        "(labeled_test, web_test), a null entry removes one, e.g. "
        "--set eval.benchmarks.stanford2d3d='{format: stanford2d3d, root: /data/s2d3d}'",
    )
    baseline_depths_m: list[PositiveFloat] = Field(
        default_factory=lambda: [2.0],
        description="constant-depth predictors scored beside the models on every benchmark "
        "(report rows `constant <d> m`; never logged to MLflow or gated)",
    )
    baseline_row_priors: list[Literal["indoor", "outdoor", "all"]] = Field(
        default_factory=lambda: ["indoor"],
        description="per-latitude priors fitted on the labelled train split's scenes of that domain (one depth "
        "per latitude band, the image ignored: `baseline.RowPriorModel`, train.height bands), scored beside the "
        "models (report rows `row prior <domain>`; never logged or gated; skipped with a logged reason where "
        "the store has no such labelled depth)",
    )
    height: int = Field(
        0, ge=0, description="inference height (rounded to the patch size; width = 2 x height); 0 = train.height"
    )
    batch_size: int = Field(4, ge=1)
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    upsample: Literal["bilinear_valid", "nearest"] = Field(
        "bilinear_valid", description="prediction -> ground-truth resolution: bilinear over valid "
        "(non-zero) pixels, horizontally periodic; or nearest"
    )
    max_images: int = Field(0, ge=0, description="evaluate at most this many images per benchmark; 0 = all")
    primary_metric: Literal["abs_rel", "sq_rel", "rmse", "rmse_log", "mae", "delta1", "delta2", "delta3"] = Field(
        "abs_rel", description="decides the champion alias (delta* higher is better, others lower)"
    )
    regression_tolerance: float = Field(
        0.05, ge=0, description="the gate fails when the new model's primary metric is worse than "
        "the champion's by more than this fraction, on any benchmark both were evaluated on"
    )
    figure_samples: int = Field(3, ge=0, description="RGB | GT | prediction | error figures per benchmark")

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _onto_default_benchmarks(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        merged: dict[str, Any] = {**_default_benchmarks(), **v}
        return {k: spec for k, spec in merged.items() if spec is not None}
    colormap: str = Field("Spectral", description="matplotlib colormap of depth images (near = first colour)")
    error_colormap: str = Field("magma", description="matplotlib colormap of absolute-relative-error images")
    colour_max_m: float = Field(0.0, ge=0, description="depth mapped to the colormap's end; 0 = 99th percentile")


class DvcConfig(Section):
    """DVC (own virtualenv `.venv-dvc`, called through its CLI): data versions and the S3 remote."""

    executable: str = Field("", description="dvc CLI; empty = .venv-dvc/bin/dvc in the project, else PATH")
    remote: str = Field("storage", description="name of the default remote")
    remote_url: str = Field("", description="s3://bucket/prefix (MinIO/moto through endpoint_url); empty = none")
    endpoint_url: str = Field("", description="S3 endpoint of the remote; empty = storage.endpoint_url")
    timeout_s: float = Field(600.0, gt=0)


class DapConfig(Section):
    profile: str = "tiny"
    storage: StorageConfig = Field(default_factory=StorageConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    sim: SimConfig = Field(default_factory=SimConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    video: VideoConfig = Field(default_factory=VideoConfig)
    tagging: TaggingConfig = Field(default_factory=TaggingConfig)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    discriminator: DiscriminatorConfig = Field(default_factory=DiscriminatorConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    curation: CurationConfig = Field(default_factory=CurationConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    dvc: DvcConfig = Field(default_factory=DvcConfig)

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


def profile_path(profile: str) -> Path:
    """A profile name (`test`) or the path of a resolved config file (`params.yaml`, as DVC uses)."""
    if profile.endswith((".yaml", ".yml")):
        path = Path(profile)
        return path if path.is_absolute() or path.is_file() else project_dir() / path
    return PROFILES_DIR / f"{profile}.yaml"


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


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false are booleans, so `domain_scale: off` stays the string
    "off" (YAML 1.1 reads on/off/yes/no as booleans)."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    """A profile or an override value (YAML, with YAML 1.2 booleans)."""
    return yaml.load(text, Loader=_YamlLoader)


def parse_override(text: str) -> tuple[str, Any]:
    """`"train.steps=10"` → `("train.steps", 10)`; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"config override {text!r}: expected KEY=VALUE, e.g. train.steps=10")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"config override {text!r}: empty key")
    return key, load_yaml(raw) if raw.strip() else ""


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
    path = profile_path(profile)
    if not path.is_file():
        raise ConfigError(
            f"unknown profile {profile!r}; available: {', '.join(available_profiles())}"
        )
    tree = load_yaml(path.read_text()) or {}
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


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """`--profile` and repeated `--set key=value` (any knob of `DapConfig`)."""
    parser.add_argument(
        "--profile", default=None, help="config profile: test, tiny, small, full (default: $DAP_PROFILE or tiny)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a knob, e.g. --set train.steps=10 (repeatable)",
    )


def config_from_args(args: argparse.Namespace) -> DapConfig:
    """The config chosen by `add_config_arguments`' options."""
    return load_config(args.profile, args.overrides)
