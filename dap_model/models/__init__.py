"""The DAP network and its parts: backbone registry, DPT decoder, the model, the discriminator;
DAP's released network (`dap_release`, `model.architecture=dap_release`)."""

from dap_model.models.backbones import available_backbones, build_backbone, register_backbone
from dap_model.models.dap import DapModel, build_model, load_model, save_model
from dap_model.models.dap_release import DapReleaseModel, is_release_file, load_release
from dap_model.models.discriminator import (
    PatchDiscriminator,
    build_discriminator,
    discriminator_loss,
    generator_loss,
)

__all__ = [
    "DapModel",
    "DapReleaseModel",
    "PatchDiscriminator",
    "available_backbones",
    "build_backbone",
    "build_discriminator",
    "build_model",
    "discriminator_loss",
    "generator_loss",
    "is_release_file",
    "load_release",
    "load_model",
    "register_backbone",
    "save_model",
]
