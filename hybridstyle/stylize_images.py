"""The image-level stylize path: images in, a PIL image of the content's size out.

:func:`stylize_image` is what ``HybridStyle.stylize`` and ``HybridStylePipeline.__call__`` both run, so the two give
the same image to the last bit. In order: check the options, read the content and the styles, size them to the
model's working size, read the masks, stylize (whole, or tile by tile for large images: :mod:`hybridstyle.tiling`),
refine if asked (:mod:`hybridstyle.refine`), then back to the content's size, with its colours or its own pixels
outside a single style's mask (:mod:`hybridstyle.masks_and_color`).

The model is used only through the methods :class:`~hybridstyle.tiling.StyleModel` names: this module does not
import it, so the model's ``stylize`` can import this one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from PIL import Image

from . import ops, tiling
from .checks import is_whole, number
from .image_io import ImageInput, load_image, pil_to_tensor, tensor_to_pil, uint8_tensor
from .masks_and_color import keep_colors, overlay, prepare_masks
from .tiling import StyleModel

MIN_SIDE = 16  # the smallest content side accepted, in pixels


@torch.inference_mode()
def stylize_image(
    model: StyleModel, content: ImageInput, style: ImageInput | Sequence[ImageInput], *,
    weights: Sequence[float] | None = None, alpha: float = 1.0, preserve_color: bool = False,
    masks: Sequence[ImageInput | torch.Tensor] | None = None, mask_blur: float = 0.02, style_scale: float = 1.0,
    method: str = "adain", max_size: int = 8192, tile: int | None = None, progress: bool = False,
    quality: str | int = "fast", callback: Callable[[int, int, float], None] | None = None,
) -> Image.Image:
    """Paint ``content`` in the style of one or several images with ``model``; a PIL image of the content's size.

    Parameters:
        model: a :class:`~hybridstyle.HybridStyle` (or subclass) to stylize with, on its own device and dtype.
        content, style, weights, alpha, preserve_color, masks, mask_blur, style_scale, method, max_size, tile,
        progress, quality, callback:
            As in :meth:`hybridstyle.HybridStyle.stylize`, which documents them (the options are keyword-only here:
            fourteen of them, and a positional slip would stylize with the wrong one).
    """
    from . import refine

    schedule = refine.quality_schedule(quality)
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles:
        raise ValueError("pass at least one style image")
    alpha = number(alpha, "alpha", "in [0, 1] (0 = content only, 1 = full style)")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (0 = content only, 1 = full style), got {alpha}")
    style_scale = number(style_scale, "style_scale", "> 0 (1 = read styles at the content's size)")
    if not (math.isfinite(style_scale) and style_scale > 0):
        raise ValueError(f"style_scale must be > 0 (1 = read styles at the content's size), got {style_scale}")
    mask_blur = number(mask_blur, "mask_blur", "in [0, 1] (a fraction of the image's long side, 0 = hard edges)")
    if not (math.isfinite(mask_blur) and mask_blur >= 0):
        raise ValueError(f"mask_blur must be >= 0 (a fraction of the image's long side, 0 = hard edges), got {mask_blur}")
    if mask_blur > 1:  # 1 already blurs over the whole image; 1e9 asked for a kernel of terabytes
        raise ValueError(f"mask_blur is a fraction of the image's long side, at most 1 (0.02 = soft edges), "
                         f"got {mask_blur:g}")
    if method not in ("adain", "wct"):
        raise ValueError(f"method must be 'adain' or 'wct', got {method!r}")
    factor = model.downsample_factor
    if not (is_whole(max_size) and max_size > 0):
        raise ValueError(f"max_size must be a whole number of pixels (the largest long side accepted), got {max_size!r}")
    if tile is not None and (not is_whole(tile) or tile != 0 and (tile < 4 * factor or tile % factor)):
        raise ValueError(f"tile must be a multiple of {factor} and at least {4 * factor} pixels (0: no tiling), got {tile!r}")
    content_image = load_image(content, "content")
    width, height = content_image.size
    if max(width, height) > max_size:
        raise ValueError(
            f"content is {width}x{height}, over max_size={max_size}; downscale it or pass max_size={max(width, height)}"
        )
    if min(width, height) < MIN_SIDE:
        raise ValueError(f"content is {width}x{height}; each side needs at least {MIN_SIDE} pixels")
    if masks is not None and weights is not None:
        raise ValueError("pass weights or masks, not both: masks decide how much of each style goes where "
                         "(scale a mask, e.g. 0.5 * mask, to weaken its style)")
    weights = ops.normalize_weights(weights, len(styles)) if masks is None else None
    if masks is not None and len(masks) != len(styles):
        raise ValueError(f"got {len(masks)} masks for {len(styles)} styles; pass one mask per style")
    if tile is None:
        tile = tiling.AUTO_TILE if max(width, height) > tiling.AUTO_TILE_ABOVE and method == "adain" else 0
    elif tile and method != "adain":
        raise ValueError("tiling needs method='adain' (WCT whitens each tile differently); pass tile=0")

    device, dtype = model.device, model.dtype
    # At least two pixels at the coarsest level: the light model's reflection padding needs them.
    work_w, work_h = (max(2 * factor, round(s / factor) * factor) for s in (width, height))
    tiled = bool(tile and (work_h > tile or work_w > tile))
    # Tiled (large) images stay 8-bit until each tile is read (a quarter of the memory of float32 pixels) and the
    # tiles are blended straight into an 8-bit result; refinement needs them as floats.
    lean = tiled and not schedule
    to_tensor = uint8_tensor if lean else lambda image: pil_to_tensor(image).to(device, dtype)
    resized = content_image if content_image.size == (work_w, work_h) else content_image.resize((work_w, work_h),
                                                                                                Image.LANCZOS)
    content_tensor = to_tensor(resized)
    del resized
    style_long_side = min(max_size, max(64, round(max(work_w, work_h) * style_scale)))
    style_tensors = [
        style_tensor(load_image(s, f"style {i + 1}"), style_long_side, factor, to_tensor) for i, s in enumerate(styles)
    ]
    mask_tensor = overlay_mask = None
    if masks is not None:
        mask_tensor, overlay_mask = prepare_masks(masks, (width, height), (work_w, work_h), mask_blur, device, dtype)

    if tiled:
        style_levels = [tiling.feature_statistics(model, s, tile=tile) for s in style_tensors]
        images = tiling.stylize_tiled(model, content_tensor, style_levels, weights, alpha, mask_tensor, tile, progress,
                                      as_image=lean)
    else:
        images = model(content_tensor, style_tensors, weights=weights, alpha=alpha, masks=mask_tensor, method=method).images
    if schedule:
        images = refine.refine(images.to(device), content_tensor, style_tensors, weights, alpha, mask_tensor, method,
                               schedule, network=refine.loss_network(device, dtype), callback=callback,
                               progress=progress)
    result = images if isinstance(images, Image.Image) else tensor_to_pil(images.float())
    del images, content_tensor, mask_tensor
    if result.size != (width, height):
        result = result.resize((width, height), Image.LANCZOS)
    if preserve_color:
        # At full resolution against the original content, so the chroma is the content's own, not a copy that
        # went through the working-size resize and back.
        result = keep_colors(result, content_image)
    if overlay_mask is not None:
        result = overlay(content_image, result, overlay_mask)
    return result


def style_tensor(image: Image.Image, long_side: int, factor: int,
                 to_tensor: Callable[[Image.Image], torch.Tensor] = pil_to_tensor) -> torch.Tensor:
    """A style image resized to ``long_side`` pixels (its aspect kept) as a tensor the model's encoder can read.

    Parameters:
        image: the style image.
        long_side: its long side after resizing, in pixels.
        factor: the model's ``downsample_factor``; each side becomes at least twice that.
        to_tensor: makes the tensor from the resized image (floats in [0, 1] by default; uint8 for large tiled images).
    """
    scale = long_side / max(image.size)
    size = tuple(max(1, round(s * scale)) for s in image.size)
    tensor = to_tensor(image.resize(size, Image.LANCZOS))
    # A strip of a style (500x1, 2000x40) is thinner than the encoder's coarsest level needs (two pixels there):
    # mirror it onto itself up to that side, which keeps its colours and strokes (stretching would smear them).
    min_side = 2 * factor
    for dim in (2, 3):
        if tensor.shape[dim] < min_side:
            while tensor.shape[dim] < min_side:
                tensor = torch.cat([tensor, tensor.flip(dim)], dim)
            tensor = tensor.narrow(dim, 0, min_side)
    return tensor
