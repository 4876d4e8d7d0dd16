"""Cassini (transverse equirectangular) ↔ ERP, as used by Deep360.

A Cassini panorama is Hc × Wc with Hc = 2·Wc (portrait). Its polar axis is the camera's x axis
(right), so the ERP's poles (up, down) lie on its vertical centre line. Pixel (v, u) has its
centre at

    α = (v + 0.5)/Hc · 2π − π        (rotation about x; 0 at the vertical centre, down positive)
    β = (u + 0.5)/Wc · π − π/2       (angle from the y-z plane towards +x; right positive)

and looks along ray = (sin β, −cos β · sin α, cos β · cos α) in the project's camera frame
(docs/architecture.md#conventions: x right, y up, z forward). So the image centre looks forward, a
quarter from the top looks up, three quarters down looks down, the top and bottom rows look
backward, and the left/right edges are the −x/+x poles. This is the mapping of the MODE / Deep360
loaders (`theta_c = atan2(tan lat, cos lon)`, `phi_c = asin(cos lat · sin lon)`) with pixel
centres instead of their `align_corners=True` grid (a difference of at most half a pixel).

Implementation: the Cassini image transposed and mirrored left-right, T = C[v, u] → T[u, Hc−1−v],
is a Wc × 2Wc ERP of the frame F' with ray' = M · ray, M = [[0,1,0],[−1,0,0],[0,0,1]] (a proper
rotation), so the conversion is `geometry.rotate_erp(T, M)`, which handles the wrap across the
seam and over the poles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

_M = ((0.0, 1.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 0.0, 1.0))  # ray' = M · ray


def _m(t: "Tensor") -> "Tensor":
    import torch

    return torch.tensor(_M, device=t.device, dtype=t.dtype)


def cassini_rays(hc: int, wc: int) -> "Tensor":
    """Ray [Hc,Wc,3] (float64) at every Cassini pixel centre (module doc)."""
    import torch

    dtype = torch.float64
    alpha = (torch.arange(hc, dtype=dtype) + 0.5) / hc * (2 * torch.pi) - torch.pi  # [Hc]
    beta = (torch.arange(wc, dtype=dtype) + 0.5) / wc * torch.pi - torch.pi / 2  # [Wc]
    a, b = alpha[:, None], beta[None, :]
    return torch.stack(
        (torch.sin(b).expand(hc, wc), -torch.cos(b) * torch.sin(a), torch.cos(b) * torch.cos(a)), dim=-1
    )


def cassini_to_erp(cassini: "Tensor", mode: str = "bilinear") -> "Tensor":
    """Cassini [B,C,Hc,Wc] (Hc = 2 Wc) → ERP [B,C,Wc,2Wc]. Use mode="nearest" for depth."""
    if cassini.dim() != 4 or cassini.shape[-2] != 2 * cassini.shape[-1]:
        raise ValueError(f"cassini_to_erp: expected [B,C,Hc,Wc] with Hc = 2 Wc, got {tuple(cassini.shape)}")
    from dap_model.geometry import rotate_erp

    t = cassini.transpose(-1, -2).flip(-1).contiguous()  # [B,C,Wc,Hc]: ERP in frame F'
    return rotate_erp(t, _m(t), mode, allow_nan=True)


def erp_to_cassini(erp: "Tensor", mode: str = "bilinear") -> "Tensor":
    """ERP [B,C,H,2H] → Cassini [B,C,2H,H]; the inverse of `cassini_to_erp`."""
    if erp.dim() != 4 or erp.shape[-1] != 2 * erp.shape[-2]:
        raise ValueError(f"erp_to_cassini: expected [B,C,H,2H], got {tuple(erp.shape)}")
    from dap_model.geometry import rotate_erp

    t = rotate_erp(erp, _m(erp).T, mode, allow_nan=True)  # [B,C,H,2H] in F'
    return t.flip(-1).transpose(-1, -2).contiguous()
