"""The code location: every asset, check, schedule and sensor of the DAP engine."""

from __future__ import annotations

import importlib
import pkgutil

from dagster import (
    Definitions,
    load_asset_checks_from_package_module,
    load_assets_from_package_module,
)

from dap_assets import assets as assets_pkg
from dap_assets.resources import default_resources


def _collect(attr: str) -> list:
    """Schedules, sensors and jobs declared as module-level lists named `attr` in assets/*."""
    found: list = []
    for info in pkgutil.iter_modules(assets_pkg.__path__):
        mod = importlib.import_module(f"{assets_pkg.__name__}.{info.name}")
        found.extend(getattr(mod, attr, []))
    return found


defs = Definitions(
    assets=load_assets_from_package_module(assets_pkg),
    asset_checks=load_asset_checks_from_package_module(assets_pkg),
    schedules=_collect("SCHEDULES"),
    sensors=_collect("SENSORS"),
    jobs=_collect("JOBS"),
    resources=default_resources(),
)
