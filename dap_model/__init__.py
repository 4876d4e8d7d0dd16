"""DAP engine: the ML library (geometry, simulation, video, data formats, models, losses,
metrics, training). No Dagster import anywhere in this package."""

__version__ = "0.1.0"
