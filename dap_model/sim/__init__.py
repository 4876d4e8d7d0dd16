"""AirSim360-style procedural renderer: ERP RGB + Euclidean ray-distance depth.

    from dap_model.sim import make_scene, render, trajectory, render_sequence
"""

from dap_model.sim.render import Frame, render, render_sequence, shaky_rotations
from dap_model.sim.scenes import INDOOR_KINDS, KINDS, OUTDOOR_KINDS, Scene, make_scene
from dap_model.sim.shading import STYLES
from dap_model.sim.trajectory import trajectory

__all__ = [
    "Frame", "INDOOR_KINDS", "KINDS", "OUTDOOR_KINDS", "STYLES", "Scene", "make_scene", "render",
    "render_sequence", "shaky_rotations", "trajectory",
]
