"""Large images tile by tile: the tiles' geometry, the whole image's statistics measured over them, and the tiled
stylization that blends them back into one image.

Memory then grows with the tile, not the image. Each tile is normalised with the whole image's content statistics, so
the tiles agree, and overlapping tiles cross-fade over linear ramps, so no seam shows. The model is used only through
the methods :class:`StyleModel` names; this module does not import it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from PIL import Image

from . import ops

# Automatic tiling: contents whose long side exceeds AUTO_TILE_ABOVE are stylized in tiles of AUTO_TILE pixels.
AUTO_TILE = 1024
AUTO_TILE_ABOVE = 2048

Box = tuple[int, int, int, int]  # (top, bottom, left, right) in pixels


class StyleModel(Protocol):
    """What the image path (this module and :mod:`hybridstyle.stylize_images`) uses of a model, on tensors.

    :class:`~hybridstyle.HybridStyle` and its subclasses are such models. The image path names this protocol instead
    of importing the model, even for type hints: the model's ``stylize`` imports the image path, and an import back
    would close a circle.
    """

    downsample_factor: int  # H and W of its input must be multiples of it

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def __call__(self, content: torch.Tensor, styles: Sequence[torch.Tensor], **options: Any) -> Any: ...  # forward

    def feature_levels(self, images: torch.Tensor) -> list[torch.Tensor]: ...

    def transform_levels(self, content_levels: Sequence[torch.Tensor], style_levels: Sequence[Sequence], *args: Any,
                         content_stats: Sequence | None = None) -> list[torch.Tensor]: ...

    def decode_levels(self, levels: Sequence[torch.Tensor], size: tuple[int, int],
                      origin: tuple[int, int] = (0, 0)) -> torch.Tensor: ...


# ---- geometry ----------------------------------------------------------------------------------------------------


def tiles(height: int, width: int, tile: int | None, factor: int) -> list[tuple[Box, Box]]:
    """(padded box, core box) pairs as (top, bottom, left, right): cores cover the image without overlap; each
    padded box adds a margin of context (aligned to ``factor``) so features at a core's edge are the ones the whole
    image would give.

    Parameters:
        height, width: the image's size in pixels.
        tile: the core's side in pixels; ``None`` (or a tile the image fits in): one box, the whole image.
        factor: the model's ``downsample_factor``, which the margins are aligned to.
    """
    if tile is None or (height <= tile and width <= tile):
        return [((0, height, 0, width), (0, height, 0, width))]
    margin = tile_margin(tile, factor)
    boxes = []
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            core = (top, min(top + tile, height), left, min(left + tile, width))
            padded = (max(0, core[0] - margin), min(height, core[1] + margin),
                      max(0, core[2] - margin), min(width, core[3] + margin))
            boxes.append((padded, core))
    return boxes


def tile_margin(tile: int, factor: int) -> int:
    """Context read around each tile: a quarter tile, aligned to the downsampling ``factor``."""
    return _align(tile // 4, factor)


def crop(tensor: torch.Tensor, box: Box) -> torch.Tensor:
    """The ``box`` of the last two dimensions of ``tensor`` (a view, no copy)."""
    return tensor[..., box[0] : box[1], box[2] : box[3]]


def blend_window(box: Box, size: tuple[int, int], ramp: int) -> torch.Tensor:
    """Weights ``(1, 1, h, w)`` of one padded tile: linear ramps over ``ramp`` pixels on the sides that overlap another
    tile (not on the image's own borders), so overlapping tiles cross-fade and their weights sum to one.

    Parameters:
        box: the padded tile, (top, bottom, left, right).
        size: the whole image's (height, width).
        ramp: width of the ramps in pixels (the whole overlap of two neighbouring tiles).
    """
    def profile(start: int, stop: int, full: int) -> torch.Tensor:
        position = torch.arange(start, stop, dtype=torch.float32) + 0.5
        weight = torch.ones(stop - start)
        if start > 0:
            weight = torch.minimum(weight, (position - start) / ramp)
        if stop < full:
            weight = torch.minimum(weight, (stop - position) / ramp)
        return weight.clamp_min(1e-3)

    return (profile(box[0], box[1], size[0])[:, None] * profile(box[2], box[3], size[1])[None, :])[None, None]


def _align(value: int, factor: int) -> int:
    return max(factor, value // factor * factor)


def _relative(inner: Box, outer: Box) -> Box:
    return (inner[0] - outer[0], inner[1] - outer[0], inner[2] - outer[2], inner[3] - outer[2])


def _scale_box(box: Box, scale: float) -> Box:
    return tuple(round(v * scale) for v in box)


# ---- the model over tiles ----------------------------------------------------------------------------------------


def pixels(model: StyleModel, images: torch.Tensor) -> torch.Tensor:
    """A crop of an image kept as uint8 (large images, tiled) as floats in [0, 1] on the model's device and dtype;
    float crops are returned as they are.

    Parameters:
        model: the model the crop is for.
        images: ``(N, 3, h, w)``, uint8 in 0..255 or floats in [0, 1].
    """
    if images.dtype != torch.uint8:
        return images
    return images.to(model.device).float().div_(255).to(model.dtype)


@torch.no_grad()
def feature_statistics(model: StyleModel, images: torch.Tensor, masks: torch.Tensor | None = None,
                       tile: int | None = None) -> list:
    """(mean, std) of every level of ``model.feature_levels``, measured tile by tile (memory bounded by ``tile``).

    Parameters:
        model: the model whose features are measured.
        images: ``(N, 3, H, W)`` in [0, 1] (or uint8 in 0..255, converted a tile at a time: a quarter of the
            memory), H and W multiples of ``model.downsample_factor``.
        masks: optional ``(N, S, H, W)`` region weights; then each level holds one (mean, std) per region.
        tile: tile side in pixels (``None``: the whole image at once).

    Returns:
        per level, ``(mean, std)`` shaped ``(N, C, 1, 1)``, or with ``masks`` a list of them, one per region.
    """
    totals: list[list[torch.Tensor]] | None = None
    for box, core in tiles(images.shape[2], images.shape[3], tile, model.downsample_factor):
        crop_pixels = pixels(model, crop(images, box))
        levels = model.feature_levels(crop_pixels)
        region = None if masks is None else crop(masks, box).to(crop_pixels.dtype)
        per_level = []
        for feat in levels:
            core_in_feat = _scale_box(_relative(core, box), feat.shape[2] / (box[1] - box[0]))
            inner = crop(feat, core_in_feat)
            if region is None:
                per_level.append([ops.feature_moments(inner)])
            else:
                small = crop(F.interpolate(region, size=feat.shape[2:], mode="area"), core_in_feat)
                per_level.append([ops.feature_moments(inner, small[:, i : i + 1]) for i in range(small.shape[1])])
        totals = per_level if totals is None else [[a + b for a, b in zip(t, p)] for t, p in zip(totals, per_level)]
    stats = [[tuple(t.to(crop_pixels.dtype) for t in ops.moments_to_mean_std(m)) for m in level] for level in totals]
    return [level if masks is not None else level[0] for level in stats]


@torch.no_grad()
def stylize_tiled(
    model: StyleModel,
    content: torch.Tensor,
    style_levels: Sequence[Sequence[ops.StyleStats]],
    weights: Sequence[float] | None,
    alpha: float,
    masks: torch.Tensor | None,
    tile: int,
    progress: bool = False,
    as_image: bool = False,
) -> torch.Tensor | Image.Image:
    """Stylize ``content`` (1, 3, H, W) tile by tile with the whole image's content statistics (so the tiles agree),
    blending overlapping tiles with linear ramps (so no seam shows); returns float32 on the CPU, or with
    ``as_image`` an RGB image.

    The blend is summed in a band of float rows (one row of tiles and its margins), and rows that no later tile
    reaches are written out at once: with ``as_image`` memory does not grow with the image beyond its 8-bit pixels.

    Parameters:
        model: the model that stylizes each tile.
        content: ``(1, 3, H, W)``, floats in [0, 1] or uint8, H and W multiples of ``model.downsample_factor``.
        style_levels: per style, the (mean, std) of each feature level (:func:`feature_statistics`).
        weights: fusion weights, one per style (``None`` with ``masks``).
        alpha: 1 = full style, 0 = the content's own features.
        masks: optional ``(1, S, H, W)`` region weights, one channel per style.
        tile: the tiles' side in pixels.
        progress: show a progress bar over the tiles.
        as_image: return an RGB PIL image (blended straight into 8 bits) rather than a float tensor.
    """
    from tqdm.auto import tqdm

    height, width = content.shape[2:]
    content_stats = feature_statistics(model, content, masks, tile)
    result = torch.empty(height, width, 3, dtype=torch.uint8) if as_image else torch.empty(1, 3, height, width)
    margin = tile_margin(tile, model.downsample_factor)
    ramp_width = 2 * margin  # the whole overlap of two neighbouring padded tiles
    band_top = 0  # the band holds the sums of rows band_top.. (those not written out yet)
    out, total_weight = torch.zeros(1, 3, 0, width), torch.zeros(1, 1, 0, width)
    boxes = tqdm(tiles(height, width, tile, model.downsample_factor), desc="tiles", disable=not progress, leave=False)
    for _, row in itertools.groupby(boxes, key=lambda pair: pair[1][0]):  # a row of tiles at a time
        row = list(row)
        row_bottom = row[0][1][1]
        grow = min(height, row_bottom + margin) - band_top - out.shape[2]
        out = torch.cat([out, torch.zeros(1, 3, grow, width)], dim=2)
        total_weight = torch.cat([total_weight, torch.zeros(1, 1, grow, width)], dim=2)
        for box, _ in row:
            crop_pixels = pixels(model, crop(content, box))
            region = None if masks is None else crop(masks, box)
            targets = model.transform_levels(model.feature_levels(crop_pixels), style_levels, weights, alpha, region,
                                             content_stats=content_stats)
            image = model.decode_levels(targets, tuple(crop_pixels.shape[2:]), origin=(box[0], box[2])).float().cpu()
            ramp = blend_window(box, (height, width), ramp_width)
            rows = slice(box[0] - band_top, box[1] - band_top)
            out[..., rows, box[2] : box[3]] += image * ramp
            total_weight[..., rows, box[2] : box[3]] += ramp
        # The next row of tiles starts margin above this one's bottom: the rows above it are final.
        done = height if row_bottom >= height else max(band_top, row_bottom - margin)
        count = done - band_top
        final = out[..., :count, :] / total_weight[..., :count, :]
        if as_image:
            result[band_top:done] = final.clamp_(0, 1).mul_(255).round_().to(torch.uint8)[0].permute(1, 2, 0)
        else:
            result[..., band_top:done, :] = final
        out, total_weight = out[..., count:, :].clone(), total_weight[..., count:, :].clone()
        band_top = done
    return Image.fromarray(result.numpy()) if as_image else result
