"""Region masks and colour preservation: where each style paints, and what of the photo's own pixels comes back.

:func:`prepare_masks` turns the user's masks into what the stylize path needs (region weights for the model, or with
one style a mask to lay the stylized image over the photo with); :func:`keep_colors` and :func:`overlay` then mix the
stylized image with the original content at full resolution, a band of rows at a time, so no full-size float copy of a
large image is ever made.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import ops
from .image_io import ImageInput, load_mask, pil_to_tensor, tensor_to_pil


def prepare_masks(
    masks: Sequence[ImageInput | torch.Tensor],
    size: tuple[int, int],
    work_size: tuple[int, int],
    mask_blur: float,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The user's masks, read, blurred and shaped for their use: ``(model_masks, overlay_mask)``, one of them ``None``.

    Several masks share the image out among the styles: they go to the model as ``(1, S, h, w)`` region weights at
    the working size. A single mask cannot do that (the model's masks are normalised to sum to one, so one would paint
    everything): it comes back as an ``(H, W)`` mask in [0, 1] at the content's size, for :func:`overlay`.

    Parameters:
        masks: one mask per style (path, PIL image, numpy array or tensor), white where that style paints.
        size: the content's (width, height); each mask is read at this size.
        work_size: the (width, height) the model works at.
        mask_blur: softness of the mask edges as a fraction of the long side.
        device, dtype: where and in what the model's masks are wanted.
    """
    width, height = size
    work_w, work_h = work_size
    stacked = torch.stack([load_mask(m, (width, height), f"mask {i + 1}") for i, m in enumerate(masks)])[None]
    blurred = ops.gaussian_blur(stacked, mask_blur * max(width, height))
    del stacked
    if len(masks) == 1:
        # One style in a region: the style inside, the content's own pixels outside, mixed after decoding at full
        # resolution.
        return None, blurred[0, 0].clamp(0, 1)
    if (work_h, work_w) != (height, width):
        blurred = F.interpolate(blurred, size=(work_h, work_w), mode="bilinear", align_corners=False)
    return blurred.to(device, dtype), None


def keep_colors(stylized: Image.Image, content: Image.Image, rows: int = 256) -> Image.Image:
    """:func:`ops.transfer_luminance` of two images a band of rows at a time (it is per pixel): no full-size floats.

    Parameters:
        stylized: the stylized image, whose luminance is kept.
        content: the original content, the same size, whose colours (chroma) are kept.
        rows: height of a band in pixels.
    """
    out = np.empty((stylized.height, stylized.width, 3), np.uint8)
    for top in range(0, stylized.height, rows):
        box = (0, top, stylized.width, min(stylized.height, top + rows))
        recolored = ops.transfer_luminance(pil_to_tensor(stylized.crop(box)), pil_to_tensor(content.crop(box)))
        out[box[1] : box[3]] = np.asarray(tensor_to_pil(recolored.clamp(0, 1)))
    return Image.fromarray(out)


def overlay(content: Image.Image, stylized: Image.Image, mask: torch.Tensor, rows: int = 256) -> Image.Image:
    """``stylized`` where ``mask`` (H, W) is 1, ``content``'s own pixels where it is 0, a band of rows at a time.

    Parameters:
        content: the original content.
        stylized: the stylized image, the content's size.
        mask: ``(H, W)`` weights in [0, 1] of the stylized image (the second of :func:`prepare_masks`).
        rows: height of a band in pixels.
    """
    photo, painted = np.asarray(content.convert("RGB")), np.asarray(stylized)
    out = np.empty_like(painted)
    for top in range(0, out.shape[0], rows):
        band = slice(top, top + rows)
        soft = mask[band].numpy()[..., None]
        mixed = photo[band] * (1 - soft) + painted[band] * soft
        out[band] = mixed.round().clip(0, 255).astype(np.uint8)
    return Image.fromarray(out)
