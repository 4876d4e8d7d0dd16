"""Web panoramic video: manifest, download, frame extraction, layout and horizon validation."""

from dap_model.video.horizon import HorizonResult, check_horizon

__all__ = ["HorizonResult", "check_horizon"]
