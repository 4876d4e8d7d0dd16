"""The data store's layout: every key and key pattern the project reads or writes.

Keys are relative POSIX paths under the store's root (`storage.root` on disk, or
`s3://<bucket>/<prefix>`); DVC tracks the same paths under `data/`. Every module, asset, CLI
command and test names a key through this module, never as a string literal.

| key                                    | written by                  | holds                                               |
|----------------------------------------|-----------------------------|-----------------------------------------------------|
| `airsim360/<sequence>/...`             | airsim360_scenes            | simulated panoramas, AirSim360 layout               |
| `labeled/{train,val,test}-NNNNNN.tar`  | labeled_panoramas           | labelled shards (rgb + metric depth)                |
| `labeled/manifest.parquet`             | labeled_panoramas           | one row per labelled sample (split, domain, shard)  |
| `labeled/dataset.json`                 | labeled_panoramas           | source and version of the labelled set              |
| `labeled/preview.png`                  | labeled_panoramas           | a contact sheet of the labelled set                 |
| `web/default/manifest.csv`             | web_video_manifest          | the generated default video list                    |
| `web/default/videos/<name>.mp4`        | web_video_manifest          | generated default videos                            |
| `web/manifest.parquet`                 | web_video_manifest          | the normalised video manifest (one row per video)   |
| `web/videos/<video_id>.<ext>`, `.json` | web_videos (partitioned)    | a downloaded video and its sidecar                  |
| `web/frames/<video_id>/`               | web_frames (partitioned)    | frame shards, `frames.parquet`, `summary.json`      |
| `web/buckets/assignment.parquet`       | new-video sensor, make run  | video → bucket (append-only; buckets = partitions)  |
| `web/buckets/<bucket>/outcomes.parquet`| web_videos, web_frames      | one row per video of a bucket: status, reason       |
| `web/gt/*.tar`                         | web_video_manifest          | withheld depth of the default videos (measurement)  |
| `web/test/*.tar`, `manifest.parquet`   | web_video_manifest          | the held-out web benchmark                          |
| `synth/shards/*.tar`, `synth/gt/*.tar` | dit360_indoor               | synthesised panoramas; withheld depth (measurement) |
| `synth/manifest.parquet`               | dit360_indoor               | one row per synthesised panorama                    |
| `real/shards/<source>-NNNNNN.tar`      | scene_tags                  | real panoramas / video frames (`pool.real_sources`) |
| `real/manifest.parquet`, `summary.json`| scene_tags                  | every real file or frame: accepted, or why not      |
| `pool/scene_tags.parquet`              | scene_tags                  | indoor/outdoor tag of every pool candidate          |
| `pool/manifest.parquet`                | unlabeled_pool              | the unlabelled pool                                 |
| `models/<stage>/model.safetensors`     | stage1/2/3 labelers         | weights (+ `model.json`, resolved config)           |
| `models/discriminator/...`             | depth_discriminator         | PatchGAN weights                                    |
| `curation/scores.parquet`              | depth_discriminator         | realism score of every stage-1 pseudo-label         |
| `pseudo/{stage1,curated,stage2}/`      | pseudo-label assets         | pseudo-label shards + `manifest.parquet`            |
| `distill/`                             | perspective_pseudo_labels   | perspective-teacher shards + `manifest.parquet`     |

Every prefix an asset writes also holds `config.resolved.yaml`, the config that wrote it.
"""

from __future__ import annotations

RESOLVED_CONFIG_NAME = "config.resolved.yaml"  # beside every output: the fully resolved config that wrote it
MANIFEST_NAME = "manifest.parquet"  # the manifest file of a shard prefix
MODEL_FILE = "model.safetensors"  # weights file of a model prefix
MODEL_CARD = "model.json"  # a model's sidecar (stage, run id, metrics)
FRAMES_MANIFEST_NAME = "frames.parquet"  # per-video frames manifest under web/frames/<video_id>/
FRAMES_SUMMARY_NAME = "summary.json"  # per-video extraction summary under web/frames/<video_id>/
TEACHER_NAME = "teacher.json"  # which perspective teacher produced distill/


def join(prefix: str, *names: str) -> str:
    """`prefix/name/...`: a key under a prefix."""
    return "/".join((prefix, *names))


def manifest(prefix: str) -> str:
    """The manifest of a shard prefix: `<prefix>/manifest.parquet`."""
    return join(prefix, MANIFEST_NAME)


def resolved_config(prefix: str) -> str:
    """The resolved config written beside a prefix's outputs."""
    return join(prefix, RESOLVED_CONFIG_NAME)


# --- simulated labelled source -------------------------------------------------------------
AIRSIM360 = "airsim360"  # simulated scenes in the AirSim360 layout (<sequence>/panorama_<i>.png + erp_distance_<i>.npy)

# --- labelled set ------------------------------------------------------------------------
LABELED = "labeled"  # labelled shards train-/val-/test-NNNNNN.tar
LABELED_MANIFEST = manifest(LABELED)  # one row per labelled sample: key, split, domain, shard, depth stats
LABELED_DATASET = join(LABELED, "dataset.json")  # source and version of the labelled set
LABELED_PREVIEW = join(LABELED, "preview.png")  # contact sheet of labelled samples
LABELED_TEST_SHARDS = join(LABELED, "test-*.tar")  # fnmatch pattern: the labelled test split (benchmark labeled_test)

# --- web videos --------------------------------------------------------------------------
WEB = "web"  # everything from 360-degree web video
WEB_DEFAULT = join(WEB, "default")  # the generated default videos (when video.manifest is empty)
WEB_DEFAULT_MANIFEST = join(WEB_DEFAULT, "manifest.csv")  # CSV list of the generated default videos
WEB_MANIFEST = manifest(WEB)  # the normalised video manifest, one row per video
WEB_VIDEOS = join(WEB, "videos")  # downloaded videos <video_id>.<ext> + <video_id>.json sidecars
WEB_FRAMES = join(WEB, "frames")  # one folder per video: frame shards, frames.parquet, summary.json
WEB_BUCKETS = join(WEB, "buckets")  # ingest buckets: the video → bucket assignment and each bucket's outcomes
WEB_BUCKET_ASSIGNMENT = join(WEB_BUCKETS, "assignment.parquet")  # video_id, bucket; rows are only ever appended
WEB_GT = join(WEB, "gt")  # withheld depth of the default videos' frames: read only by measurement code
WEB_TEST = join(WEB, "test")  # the held-out web benchmark: shards + manifest.parquet
WEB_TEST_MANIFEST = manifest(WEB_TEST)  # one row per web benchmark frame
WEB_TEST_SHARDS = join(WEB_TEST, "*.tar")  # fnmatch pattern: the web benchmark (benchmark web_test)


def web_default_video(name: str) -> str:
    """A generated default video."""
    return join(WEB_DEFAULT, "videos", f"{name}.mp4")


def web_video(video_id: str, ext: str) -> str:
    """A downloaded video."""
    return join(WEB_VIDEOS, f"{video_id}.{ext}")


def web_video_sidecar(video_id: str) -> str:
    """A downloaded video's sidecar: source, sha256, probe results."""
    return join(WEB_VIDEOS, f"{video_id}.json")


def web_bucket_outcomes(bucket: str) -> str:
    """One bucket's per-video outcomes (the `web_videos` / `web_frames` partition)."""
    return join(WEB_BUCKETS, bucket, "outcomes.parquet")


def web_frames(video_id: str) -> str:
    """One video's frames prefix (written by its bucket's `web_frames` run)."""
    return join(WEB_FRAMES, video_id)


def web_frames_manifest(video_id: str) -> str:
    """One video's frames manifest: one row per sampled frame."""
    return join(web_frames(video_id), FRAMES_MANIFEST_NAME)


# --- synthesised panoramas ---------------------------------------------------------------
SYNTH = "synth"  # synthesised panoramas (dit360_indoor)
SYNTH_SHARDS = join(SYNTH, "shards")  # rgb shards of synthesised panoramas (pool candidates)
SYNTH_GT = join(SYNTH, "gt")  # withheld depth of synthesised panoramas: read only by measurement code
SYNTH_MANIFEST = manifest(SYNTH)  # one row per synthesised panorama

WITHHELD_GT = (WEB_GT, SYNTH_GT)  # prefixes of withheld ground truth: measurement code only, never curation

# --- real unlabelled material ------------------------------------------------------------
REAL = "real"  # real panoramas and video frames from the folders of `pool.real_sources`
REAL_SHARDS = join(REAL, "shards")  # rgb shards <source>-NNNNNN.tar (pool candidates)
REAL_MANIFEST = manifest(REAL)  # one row per real image file or sampled video frame: accepted, or the reason
REAL_SUMMARY = join(REAL, "summary.json")  # per source: folder, kind, fingerprint of its files and knobs, counts

# --- unlabelled pool ---------------------------------------------------------------------
POOL = "pool"  # the unlabelled pool's tables
POOL_TAGS = join(POOL, "scene_tags.parquet")  # indoor/outdoor tag + confidence of every candidate
POOL_MANIFEST = manifest(POOL)  # the unlabelled pool: key, shard (a store key), domain, source

# --- models ------------------------------------------------------------------------------
MODELS = "models"  # one prefix per trained model: stage1, stage2, stage3, discriminator
DISCRIMINATOR = "discriminator"  # name of the depth discriminator under models/


def model_prefix(name: str) -> str:
    """A model's prefix: weights, model card, resolved config."""
    return join(MODELS, name)


def model_key(name: str) -> str:
    """A model's weights (safetensors)."""
    return join(model_prefix(name), MODEL_FILE)


def model_card(name: str) -> str:
    """A model's sidecar JSON."""
    return join(model_prefix(name), MODEL_CARD)


DISCRIMINATOR_KEY = model_key(DISCRIMINATOR)  # the depth discriminator's weights
CURATION = "curation"  # the discriminator's scores
CURATION_SCORES = join(CURATION, "scores.parquet")  # discriminator realism score per stage-1 pseudo-label

# --- pseudo-labels -----------------------------------------------------------------------
PSEUDO = "pseudo"  # pseudo-label sets: stage1, curated, stage2


def pseudo(name: str) -> str:
    """A pseudo-label set's prefix: shards + manifest.parquet (+ excluded.parquet)."""
    return join(PSEUDO, name)


PSEUDO_STAGE1 = pseudo("stage1")  # the whole pool labelled by the stage-1 model
PSEUDO_CURATED = pseudo("curated")  # top-K per domain of stage 1's pseudo-labels by discriminator score
PSEUDO_STAGE2 = pseudo("stage2")  # the whole pool labelled by the stage-2 model

# --- perspective distillation ------------------------------------------------------------
DISTILL = "distill"  # perspective-teacher pseudo-labels (Depth Anywhere branch): shards + teacher.json
DISTILL_MANIFEST = manifest(DISTILL)  # one row per distilled panorama
DISTILL_TEACHER = join(DISTILL, TEACHER_NAME)  # which teacher produced the set

TOP_LEVEL = (AIRSIM360, LABELED, WEB, SYNTH, REAL, POOL, MODELS, CURATION, PSEUDO, DISTILL)  # every top-level prefix of the store
