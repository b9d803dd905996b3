"""Multi-scale PatchGAN discriminator (pix2pixHD-style), trained against real artworks."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch.nn.utils.parametrizations import spectral_norm


def _patch_discriminator(in_channels: int, base_channels: int, num_layers: int, use_spectral_norm: bool) -> nn.Sequential:
    wrap = spectral_norm if use_spectral_norm else (lambda module: module)
    layers: list[nn.Module] = [wrap(nn.Conv2d(in_channels, base_channels, 4, 2, 1)), nn.LeakyReLU(0.2)]
    channels = base_channels
    for i in range(1, num_layers):
        out_channels = base_channels * min(2**i, 8)
        stride = 2 if i < num_layers - 1 else 1
        layers += [wrap(nn.Conv2d(channels, out_channels, 4, stride, 1)), nn.LeakyReLU(0.2)]
        channels = out_channels
    layers.append(wrap(nn.Conv2d(channels, 1, 4, 1, 1)))
    return nn.Sequential(*layers)


def _min_size(num_layers: int, num_scales: int) -> int:
    """Smallest image side for which every scale's PatchGAN still has an input of at least 2 pixels per conv."""

    def fits(size: int) -> bool:
        for scale in range(num_scales):
            if scale:
                size = (size + 1) // 2  # avg_pool2d(3, stride 2, padding 1)
            patch = size
            for i in range(num_layers + 1):  # 4x4 convs with padding 1 need >= 2 pixels
                if patch < 2:
                    return False
                patch = patch // 2 if i == 0 or i < num_layers - 1 else patch - 1
        return True

    return next(size for size in range(1, 1 << 16) if fits(size))


class MultiScaleDiscriminator(ModelMixin, ConfigMixin):
    r"""
    PatchGAN discriminators applied to the image at several scales (each half the previous): the fine scale judges
    brush texture, the coarse ones judge larger structures. Returns one logit map per scale.

    Parameters:
        in_channels (`int`, defaults to 3): image channels.
        base_channels (`int`, defaults to 64): channels of the first conv; doubled per layer up to 8x.
        num_layers (`int`, defaults to 3): strided convs per PatchGAN; sets the patch (receptive field) size.
        num_scales (`int`, defaults to 2): number of image scales, each with its own PatchGAN.
        use_spectral_norm (`bool`, defaults to `True`): spectral normalisation keeps the GAN stable without
            tuning (Miyato et al., 2018).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, in_channels: int = 3, base_channels: int = 64, num_layers: int = 3, num_scales: int = 2,
                 use_spectral_norm: bool = True):
        super().__init__()
        if num_scales < 1 or num_layers < 1:
            raise ValueError("num_scales and num_layers must be >= 1")
        self.discriminators = nn.ModuleList(
            _patch_discriminator(in_channels, base_channels, num_layers, use_spectral_norm) for _ in range(num_scales)
        )
        self.min_size = _min_size(num_layers, num_scales)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Images ``(N, C, H, W)`` (RGB in [0, 1]) to a list of patch logit maps, finest scale first."""
        if images.dim() != 4 or images.shape[1] != self.config.in_channels:
            raise ValueError(f"images must be (N, {self.config.in_channels}, H, W), got {tuple(images.shape)}")
        if min(images.shape[2:]) < self.min_size:
            raise ValueError(
                f"images of {images.shape[3]}x{images.shape[2]} are too small for {len(self.discriminators)} scales of "
                f"{self.config.num_layers}-layer PatchGANs; each side needs at least {self.min_size} pixels"
            )
        x = images * 2 - 1
        logits = []
        for i, discriminator in enumerate(self.discriminators):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            logits.append(discriminator(x))
        return logits
