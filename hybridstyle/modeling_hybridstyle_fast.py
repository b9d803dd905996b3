"""HybridStyleFast: a micro encoder shared by content and style, AdaIN at every level, a light U-Net decoder.

The light member of the HybridStyle family (``hybridstyle-fast``, the choice for speed). Where hybridstyle-base runs VGG19
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

from . import ops
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


class StyleModulation(nn.Module):
    """The style code of every level's target statistics, mapped to a per-channel (scale, shift) for each decoder conv.

    AdaIN only moves the skip features' statistics; a decoder with fixed weights then paints every style with the same
    strokes. Conditioning each decoder conv on the style (FiLM; conditional instance norm in Magenta's network, which
    the peer is) lets the decoder draw style-specific texture. The last layers start at zero, so a model gains the
    modulation without changing what it computes until training moves them.
    """

    def __init__(self, block_out_channels: Sequence[int], modulated_channels: Sequence[int], hidden: int):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(2 * sum(block_out_channels), hidden), nn.ReLU(),
                                   nn.Linear(hidden, hidden), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(hidden, 2 * c) for c in modulated_channels)
        for head in self.heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, level_stats: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(scale, shift) ``(N, C, 1, 1)`` per modulated conv from each level's (mean, std), ``(N, C, 1, 1)`` each."""
        # log std: the statistics span orders of magnitude across levels and styles.
        code = torch.cat([t.flatten(1) for mean, std in level_stats for t in (mean, std.clamp_min(1e-4).log())], dim=1)
        # In the weights' dtype (a bfloat16 or float64 model), whatever the statistics' (video smooths them in float32).
        hidden = self.embed(code.float().to(self.embed[0].weight.dtype))
        return [tuple(t[..., None, None] for t in head(hidden).chunk(2, dim=1)) for head in self.heads]


class _MaskedFilm:
    """Per-region (scale, shift) of one conv, mixed per pixel by region masks at whatever resolution the conv runs."""

    def __init__(self, masks: torch.Tensor, films: Sequence[torch.Tensor]):
        self.masks, self.films = masks, films

    def at(self, size: torch.Size) -> torch.Tensor:
        masks = ops.normalize_masks(F.interpolate(self.masks.to(self.films[0]), size=tuple(size), mode="area"))
        return sum(masks[:, i : i + 1] * film for i, film in enumerate(self.films))


def _global_stats(stats: tuple[torch.Tensor, torch.Tensor] | Sequence) -> tuple[torch.Tensor, torch.Tensor]:
    """One (mean, std) from a level's content statistics, which hold one pair per region when masks are used."""
    if isinstance(stats, tuple):
        return stats
    return tuple(sum(pair[i] for pair in stats) / len(stats) for i in range(2))


def _drop_to_means(level: torch.Tensor, rate: float) -> torch.Tensor:
    """``level`` with each sample's features replaced by their channel means with probability ``rate``."""
    drop = (torch.rand(level.shape[0], 1, 1, 1, device=level.device) < rate).to(level.dtype)
    return level + drop * (level.mean(dim=(2, 3), keepdim=True) - level)


def _flattened(level: torch.Tensor, regions: Sequence[tuple[torch.Tensor, torch.Tensor]],
               masks: torch.Tensor | None) -> torch.Tensor:
    """``level`` replaced by its target means: one constant per channel, or per region where masks say which applies.

    The target statistics come from the styles and the whole content, so every tile of a large image gets the same
    constant.
    """
    if masks is None or len(regions) == 1:
        return regions[0][0].to(level).expand_as(level)
    weights = ops.normalize_masks(F.interpolate(masks.to(level), size=level.shape[2:], mode="area"))
    return sum(weights[:, i : i + 1] * mean.to(level) for i, (mean, _) in enumerate(regions))


def _modulated(block: nn.Sequential, x: torch.Tensor, film: torch.Tensor | _MaskedFilm | None) -> torch.Tensor:
    """One ``_conv`` block with its conv's output scaled and shifted by ``film`` (N, 2C, H|1, W|1) before the ReLU."""
    pad, conv, relu = block
    x = conv(pad(x))
    if isinstance(film, _MaskedFilm):
        film = film.at(x.shape[2:])
    if film is not None:
        scale, shift = film.chunk(2, dim=1)
        x = torch.addcmul(x + shift, x, scale)  # x * (1 + scale) + shift
    return relu(x)


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
        # Output channels of every conv block in the order forward runs them (what StyleModulation modulates).
        self.conv_channels = [channels[-1]] * bottleneck_layers + [
            channels[i] for i in levels for _ in range(layers_per_level)
        ]

    def forward(
        self, features: Sequence[torch.Tensor], size: tuple[int, int], films: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Images of ``size`` from every level's features (finest first); ``films`` modulate the convs in order."""
        films = iter(films) if films is not None else None

        def block(module: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
            return module(x) if films is None else _modulated(module, x, next(films))

        x = features[-1]
        for module in self.bottleneck:
            x = block(module, x)
        for merge, refine, skip in zip(self.up, self.refine, reversed(features[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
            x = block(merge, torch.cat([x, skip], dim=1))
            for module in refine:
                x = block(module, x)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.to_rgb(x) * 0.5 + 0.5


class TransformedLevels(list):
    """The stylized feature levels, with the statistics that the decoder's style modulation is computed from.

    ``target_stats[level]`` is one (mean, std) per region: the styles' fused statistics blended with the content's by
    alpha; with region masks, one per style and ``masks`` says where each applies. They come from the styles and the
    whole content, never from one tile, so tiles of a large image are modulated alike.
    """

    target_stats: list[list[tuple[torch.Tensor, torch.Tensor]]]
    masks: torch.Tensor | None


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
        style_modulation_dim (`int`, defaults to 0):
            Width of the style code that modulates every decoder conv (:class:`StyleModulation`); 0 leaves the decoder
            unmodulated (the decoder then sees the style only through the AdaIN-ed features).
        flat_skip_levels (`int`, defaults to 0):
            How many of the finest levels reach the decoder as their style means only, without the content's spatial
            detail: the decoder then paints that texture from the coarser levels (as AdaIN's decoder does from
            relu4_1) instead of copying the photo's fine detail in the style's colours. 0 keeps every skip.
        loss_network (`str`, defaults to `"vgg19-caffe-imagenet"`):
            The network the training losses were computed with (metadata only; not needed at inference).
    """

    @property
    def min_style_size(self) -> int:
        """The smallest style side :meth:`forward` accepts: the style runs through the same padded, strided encoder as
        the content (each level rounds up), whose coarsest level needs 2 pixels for its reflection padding."""
        return self.downsample_factor + 1

    @register_to_config

    def __init__(
        self,
        block_out_channels: tuple[int, ...] = (16, 32, 64, 128),
        encoder_bottleneck_layers: int = 2,
        decoder_bottleneck_layers: int = 4,
        decoder_layers_per_level: int = 1,
        style_modulation_dim: int = 0,
        flat_skip_levels: int = 0,
        loss_network: str = "vgg19-caffe-imagenet",
    ):
        ModelMixin.__init__(self)  # not HybridStyle.__init__: that builds VGG19
        if len(block_out_channels) < 2:
            raise ValueError("block_out_channels needs at least 2 levels")
        self.encoder = MicroEncoder(block_out_channels, encoder_bottleneck_layers)
        self.decoder = SkipDecoder(block_out_channels, decoder_bottleneck_layers, decoder_layers_per_level)
        if style_modulation_dim < 0:
            raise ValueError(f"style_modulation_dim must be >= 0 (0: no modulation), got {style_modulation_dim}")
        self.modulation = (StyleModulation(block_out_channels, self.decoder.conv_channels, style_modulation_dim)
                           if style_modulation_dim else None)
        if not 0 <= flat_skip_levels < len(block_out_channels):
            raise ValueError(f"flat_skip_levels must be in [0, {len(block_out_channels) - 1}] (the coarsest level always "
                             f"carries the content's layout), got {flat_skip_levels}")
        self.flat_skip_levels = flat_skip_levels
        self.downsample_factor = 2 ** len(block_out_channels)
        # Training only (set by scripts/train.py): the chance that a fine skip is replaced by its channel means, so the
        # decoder must paint that level from the coarser ones instead of copying the photo's fine detail.
        self.skip_dropout = 0.0

    def _dropped(self, levels: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
        if not (self.training and self.skip_dropout):
            return levels
        return [_drop_to_means(level, self.skip_dropout) if i < 2 else level for i, level in enumerate(levels)]

    def encode(self, images: torch.Tensor, num_taps: int | None = None) -> list[torch.Tensor]:
        """Every level's features of RGB images in [0, 1], finest first."""
        return self.encoder(images)[: num_taps or None]

    def encode_content(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)[-1]

    def feature_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every level is stylized: the fine levels carry strokes and edges, the coarse ones colour and layout."""
        return self.encode(images)

    def transform_levels(
        self,
        content_levels: Sequence[torch.Tensor],
        style_levels: Sequence[Sequence[torch.Tensor | tuple[torch.Tensor, torch.Tensor]]],
        weights: Sequence[float] | None = None,
        alpha: float = 1.0,
        masks: torch.Tensor | None = None,
        method: str = "adain",
        content_stats: Sequence | None = None,
    ) -> list[torch.Tensor]:
        levels = TransformedLevels(super().transform_levels(content_levels, style_levels, weights, alpha, masks, method,
                                                            content_stats))
        if self.modulation is None and not self.flat_skip_levels:
            return levels
        # The statistics the stylized features were given (WCT matches them too), from the styles and the whole content.
        styles = [[s if isinstance(s, tuple) else ops.calc_mean_std(s) for s in style] for style in style_levels]
        own = ([ops.calc_mean_std(c) for c in content_levels] if content_stats is None
               else [_global_stats(c) for c in content_stats])
        weights = ops.normalize_weights(weights, len(styles)) if masks is None else None
        levels.target_stats = []
        for level, (content_mean, content_std) in enumerate(own):
            per_style = [style[level] for style in styles]
            regions = per_style if masks is not None else [ops.fuse_style_stats(per_style, weights)]
            levels.target_stats.append([(content_mean + alpha * (m - content_mean), content_std + alpha * (s - content_std))
                                        for m, s in regions])
        levels.masks = masks
        return levels

    def decode_levels(self, levels: Sequence[torch.Tensor], size: tuple[int, int],
                      origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
        # ``origin`` is unused: this decoder has no position-dependent noise, so every tile decodes alike.
        # Read before anything replaces ``levels`` by a plain list, which would drop them.
        target_stats = getattr(levels, "target_stats", None)
        masks = getattr(levels, "masks", None)
        if self.modulation is None and not self.flat_skip_levels:
            return self.decoder(self._dropped(levels), size)
        if target_stats is None:  # features that did not come through transform_levels: their own statistics
            target_stats = [[ops.calc_mean_std(level)] for level in levels]
        levels = self._dropped(levels)
        if self.flat_skip_levels:
            flat = [_flattened(level, target_stats[i], masks) for i, level in enumerate(levels[: self.flat_skip_levels])]
            levels = flat + list(levels[self.flat_skip_levels :])
        if self.modulation is None:
            return self.decoder(levels, size)
        regions = [self.modulation([level[k] for level in target_stats]) for k in range(len(target_stats[0]))]
        if masks is None or len(regions) == 1:
            films = [torch.cat(film, dim=1) for film in regions[0]]
        else:
            # One modulation per region, mixed per pixel by the region masks at each conv's resolution.
            films = [_MaskedFilm(masks, [torch.cat(r[i], dim=1) for r in regions]) for i in range(len(regions[0]))]
        return self.decoder(levels, size, films)
