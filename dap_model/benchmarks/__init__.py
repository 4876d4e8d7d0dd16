"""Benchmark readers, selected by explicit format name (never guessed from paths).

    reader = open_benchmark("stanford2d3d", "/data/stanford2d3d")      # or "s3://bucket/prefix"
    for s in reader:  # BenchSample(key, rgb [H,W,3] uint8, depth [H,W] float32 metres, 0 = invalid)
        ...
"""

from . import formats as _formats  # noqa: F401  (registers the readers)
from .base import BenchmarkReader, BenchSample, available_formats, open_benchmark, reader_class, register
from .cassini import cassini_rays, cassini_to_erp, erp_to_cassini

__all__ = [
    "BenchSample",
    "BenchmarkReader",
    "available_formats",
    "cassini_rays",
    "cassini_to_erp",
    "erp_to_cassini",
    "open_benchmark",
    "reader_class",
    "register",
]
