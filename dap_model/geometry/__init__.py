"""ERP geometry core: batched, differentiable, device-agnostic torch on [B,C,H,W] panoramas.

Conventions (docs/architecture.md#conventions): W = 2H; lon = (u + 0.5)/W·2π − π,
lat = π/2 − (v + 0.5)/H·π; ray = (cos lat·sin lon, sin lat, cos lat·cos lon), x right, y up,
z forward. Rotations: `rotation_matrix(yaw, pitch, roll)` = Ry(yaw)·Rx(−pitch)·Rz(−roll),
camera-to-world (see `rotation`). Cube faces F,R,B,L,U,D and perspective views as py360convert
`e2c` / `e2p`.
Bad inputs raise `GeometryInputError` (a ValueError) naming the function and argument.
"""

from ._checks import GeometryInputError
from .cube import CUBE_FACE_ANGLES, CUBE_FACES, cube_face_rays, cube_face_rotations, cube_to_erp, erp_to_cube
from .erp import (
    erp_lonlat,
    erp_pixel_to_lonlat,
    erp_rays,
    lonlat_to_erp_pixel,
    lonlat_to_ray,
    ray_to_lonlat,
    solid_angle_weights,
)
from .icosahedron import (
    ICOSAHEDRON_VIEW_ANGLES,
    erp_to_icosahedron_views,
    icosahedron_rotations,
    icosahedron_vertices,
)
from .perspective import (
    erp_to_perspective,
    euclidean_to_planar_depth,
    perspective_camera_rays,
    perspective_rays,
    planar_to_euclidean_depth,
)
from .rotation import rotate_erp, rotation_matrix
from .surface import depth_to_normals, depth_to_points, valid_depth

__all__ = [
    "CUBE_FACES",
    "CUBE_FACE_ANGLES",
    "GeometryInputError",
    "ICOSAHEDRON_VIEW_ANGLES",
    "cube_face_rays",
    "cube_face_rotations",
    "cube_to_erp",
    "depth_to_normals",
    "depth_to_points",
    "erp_lonlat",
    "erp_pixel_to_lonlat",
    "erp_rays",
    "erp_to_cube",
    "erp_to_icosahedron_views",
    "erp_to_perspective",
    "euclidean_to_planar_depth",
    "icosahedron_rotations",
    "icosahedron_vertices",
    "lonlat_to_erp_pixel",
    "lonlat_to_ray",
    "perspective_camera_rays",
    "perspective_rays",
    "planar_to_euclidean_depth",
    "ray_to_lonlat",
    "rotate_erp",
    "rotation_matrix",
    "solid_angle_weights",
    "valid_depth",
]
