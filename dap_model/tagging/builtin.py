"""`builtin` tagger: ERP enclosure features and colour/texture/line statistics per latitude band
(`features.py`) → logistic model.

The model's numbers (feature means/scales, weights, bias, the feature height) are a small
reviewed JSON, `builtin_coefficients.json`, written by `python -m dap_model.tagging.fit_builtin
--real ../shared/real/unlabeled` from real labelled panoramas and simulator renders; it records
what it was fitted on and its leave-one-source-out and held-out accuracies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dap_model.errors import ConfigError
from dap_model.tagging.base import TagResult, Tagger, register_tagger
from dap_model.tagging.features import FEATURES, erp_features

DEFAULT_COEFFICIENTS = Path(__file__).with_name("builtin_coefficients.json")


class LogisticModel:
    def __init__(self, spec: dict, source: str = "coefficients"):
        try:
            names = list(spec["features"])
            self.mean = np.asarray(spec["mean"], np.float64)  # [F]
            self.scale = np.asarray(spec["scale"], np.float64)  # [F]
            self.weights = np.asarray(spec["weights"], np.float64)  # [F]
            self.bias = float(spec["bias"])
            self.height = int(spec["height"])
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{source}: not a builtin tagger coefficient file ({err})") from None
        if names != list(FEATURES):
            raise ConfigError(f"{source}: features {names} do not match this version's {list(FEATURES)}")
        if not (self.mean.shape == self.scale.shape == self.weights.shape == (len(FEATURES),)):
            raise ConfigError(f"{source}: mean/scale/weights must each have {len(FEATURES)} numbers")
        if np.any(self.scale <= 0) or self.height < 16:
            raise ConfigError(f"{source}: scales must be > 0 and height >= 16")
        self.spec = spec

    @classmethod
    def load(cls, path: str | Path) -> "LogisticModel":
        p = Path(path)
        try:
            spec = json.loads(p.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"tagging.builtin_coefficients {str(p)!r}: cannot read ({err})") from None
        return cls(spec, source=str(p))

    def p_indoor(self, feats: np.ndarray) -> np.ndarray:
        """feats [N,F] → [N] probability of indoor."""
        z = self.bias + ((feats - self.mean) / self.scale) @ self.weights
        return 1.0 / (1.0 + np.exp(-z))


@register_tagger("builtin")
class BuiltinTagger(Tagger):
    name = "builtin"

    def __init__(self, cfg, model: LogisticModel | None = None):
        self.cfg = cfg
        self.model = model or LogisticModel.load(cfg.builtin_coefficients or DEFAULT_COEFFICIENTS)

    def features(self, images: list[np.ndarray]) -> np.ndarray:
        return np.stack([erp_features(img, self.model.height) for img in images])  # [N,F]

    def _tag_valid(self, images: list[np.ndarray]) -> list[TagResult]:
        p = self.model.p_indoor(self.features(images))
        return [TagResult.from_p_indoor(pi) for pi in p]
