"""HybridStyleFast: a micro encoder shared by content and style, AdaIN at every level, a light U-Net decoder.

The light member of the HybridStyle family (the default model, ``hybridstyle-fast``). Where hybridstyle-base runs VGG19
and a mirror decoder (about 14x the peer's time at 512 px), this model runs a four-level micro encoder on the content
and on each style, moves every level of the content's features to the styles' statistics with the same feature ops
(fusion weights, alpha, region masks, WCT), and decodes them with a small decoder that takes the stylized features of
each level through skip connections: style is injected at four scales, coarse layout and fine strokes alike, and the
content's edges reach the output directly (no halo from a blurry bottleneck).

VGG19 is only the training-time loss network (``scripts/train.py --architecture fast``); it is not part of this model.
Read top to bottom: the encoder, the decoder, then the model; the image-level API (``stylize``), loading and saving come
from :class:`~hybridstyle.modeling_hybridstyle.HybridStyle`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_utils import ModelMixin

from .modeling_hybridstyle import HybridStyle


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    # Reflection padding everywhere, although zero padding would be free inside the conv: with zero padding the borders
    # tell the network where it is, and training collapsed to one style-average picture framed by border artefacts.
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(in_channels, out_channels, 3, stride=stride), nn.ReLU())


class MicroEncoder(nn.Module):
    """Every level a stride-2 conv (level ``i`` has ``1 / 2**(i+1)`` of the input's size); one feature map per level.

    Nothing runs at full resolution: at 512 px a single 16-channel full-size layer costs more than the whole coarse end.
    """

    def __init__(self, block_out_channels: Sequence[int], bottleneck_layers: int):
        super().__init__()
        channels = [3, *block_out_channels]
        self.levels = nn.ModuleList(_conv(channels[i], channels[i + 1], stride=2) for i in range(len(block_out_channels)))
        # Extra convs at the coarsest level widen the receptive field, which is where strokes and texture are read.
        self.bottleneck = nn.Sequential(*[_conv(channels[-1], channels[-1]) for _ in range(bottleneck_layers)])

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        # Channels-last activations make these narrow convs ~30% faster on CPU (oneDNN) and suit GPU tensor cores; the
        # layout then carries through every layer and the decoder.
        x = images.contiguous(memory_format=torch.channels_last) * 2.0 - 1.0
        features = []
        for i, level in enumerate(self.levels):
            x = level(x)
            if i == len(self.levels) - 1:
                x = self.bottleneck(x)
            features.append(x)
        return features


class SkipDecoder(nn.Module):
    """From the coarsest level up: bilinear upsampling (no checkerboard or grid), concatenate that level's skip, conv.

    The last level is upsampled to full size and mapped to RGB by one narrow conv.
    """

    def __init__(self, block_out_channels: Sequence[int], bottleneck_layers: int, layers_per_level: int = 1):
        super().__init__()
        channels = list(block_out_channels)
        self.bottleneck = nn.Sequential(*[_conv(channels[-1], channels[-1]) for _ in range(bottleneck_layers)])
        levels = range(len(channels) - 2, -1, -1)
        self.up = nn.ModuleList(_conv(channels[i + 1] + channels[i], channels[i]) for i in levels)
        # Optional convs after each merge, to paint more texture at that level (empty with layers_per_level=1).
        self.refine = nn.ModuleList(nn.Sequential(*[_conv(channels[i], channels[i]) for _ in range(layers_per_level - 1)])
                                    for i in levels)
        self.to_rgb = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels[0], 3, 3))

    def forward(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x = self.bottleneck(features[-1])
        for merge, refine, skip in zip(self.up, self.refine, reversed(features[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
            x = refine(merge(torch.cat([x, skip], dim=1)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.to_rgb(x) * 0.5 + 0.5


class HybridStyleFast(HybridStyle):
    r"""
    Light arbitrary style transfer and style fusion: micro encoder, AdaIN at every level, skip decoder (GAN generator).

    Same image-level API as :class:`HybridStyle` (``stylize`` with fusion weights, alpha, colour preservation, region
    masks and style scale; ``from_pretrained`` / ``save_pretrained`` / ``push_to_hub``).

    Parameters:
        block_out_channels (`tuple[int]`, defaults to `(16, 32, 64, 128)`):
            Channels of each encoder level; level ``i`` has ``1 / 2**(i+1)`` of the input's resolution.
        encoder_bottleneck_layers (`int`, defaults to 2):
            Extra 3x3 convs at the coarsest encoder level.
        decoder_bottleneck_layers (`int`, defaults to 4):
            3x3 convs at the coarsest decoder level, before upsampling.
        decoder_layers_per_level (`int`, defaults to 1):
            3x3 convs at each finer decoder level (the first merges the upsampled features with that level's skip).
        loss_network (`str`, defaults to `"vgg19-caffe-imagenet"`):
            The network the training losses were computed with (metadata only; not needed at inference).
    """

    @register_to_config
    def __init__(
        self,
        block_out_channels: tuple[int, ...] = (16, 32, 64, 128),
        encoder_bottleneck_layers: int = 2,
        decoder_bottleneck_layers: int = 4,
        decoder_layers_per_level: int = 1,
        loss_network: str = "vgg19-caffe-imagenet",
    ):
        ModelMixin.__init__(self)  # not HybridStyle.__init__: that builds VGG19
        if len(block_out_channels) < 2:
            raise ValueError("block_out_channels needs at least 2 levels")
        self.encoder = MicroEncoder(block_out_channels, encoder_bottleneck_layers)
        self.decoder = SkipDecoder(block_out_channels, decoder_bottleneck_layers, decoder_layers_per_level)
        self.downsample_factor = 2 ** len(block_out_channels)

    def encode(self, images: torch.Tensor, num_taps: int | None = None) -> list[torch.Tensor]:
        """Every level's features of RGB images in [0, 1], finest first."""
        return self.encoder(images)[: num_taps or None]

    def encode_content(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)[-1]

    def feature_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every level is stylized: the fine levels carry strokes and edges, the coarse ones colour and layout."""
        return self.encode(images)

    def decode_levels(self, levels: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        return self.decoder(levels, size)
