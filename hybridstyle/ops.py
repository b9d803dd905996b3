"""Feature-space style operations: small pure functions on ``(N, C, H, W)`` tensors.

Everything here is differentiable and device/dtype agnostic. The models (``modeling_hybridstyle*.py``), the losses
(``losses.py``) and the image path's masks, colours and tiles are built from these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

EPS = 1e-5
StyleStats = tuple[torch.Tensor, torch.Tensor]  # per-channel (mean, std), each (N, C, 1, 1)


def calc_mean_std(feat: torch.Tensor, mask: torch.Tensor | None = None, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation over the spatial axes, shaped ``(N, C, 1, 1)``.

    Parameters:
        feat: features ``(N, C, H, W)``.
        mask: optional soft weights ``(N, 1, H, W)`` in [0, 1]; the statistics are then taken over the weighted region.
        eps: added to the variance so that flat regions do not divide by zero.
    """
    if feat.dim() != 4:
        raise ValueError(f"expected features shaped (N, C, H, W), got {tuple(feat.shape)}")
    if mask is None:
        # Two plain means, not torch.var_mean: as exact here, and 4x faster on CPUs (the light model's hot path).
        mean = feat.mean(dim=(2, 3), keepdim=True)
        var = (feat - mean).square().mean(dim=(2, 3), keepdim=True)
        return mean, (var + eps).sqrt()
    total = mask.sum(dim=(2, 3), keepdim=True).clamp_min(eps)
    mean = (feat * mask).sum(dim=(2, 3), keepdim=True) / total
    var = ((feat - mean) ** 2 * mask).sum(dim=(2, 3), keepdim=True) / total
    return mean, (var + eps).sqrt()


def adaptive_instance_normalization(
    content_feat: torch.Tensor,
    style_mean: torch.Tensor,
    style_std: torch.Tensor,
    mask: torch.Tensor | None = None,
    content_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """AdaIN (Huang & Belongie, 2017): give ``content_feat`` the per-channel mean and std of a style.

    Parameters:
        content_feat: content features ``(N, C, H, W)``.
        style_mean, style_std: target statistics ``(N or 1, C, 1, 1)``, e.g. from :func:`calc_mean_std`.
        mask: optional region ``(N, 1, H, W)``; the content's statistics are then measured inside it, so the
            region (not the whole image) is what gets the style's statistics.
        content_stats: the content's (mean, std) to normalise with instead of measuring ``content_feat``: those of
            the whole image when ``content_feat`` is one tile of it, or smoothed over video frames.
    """
    content_mean, content_std = content_stats if content_stats is not None else calc_mean_std(content_feat, mask)
    # One fused multiply-add per element: (x - mean_c) / std_c * std_s + mean_s, folded into per-channel scale and shift.
    scale = style_std / content_std
    return torch.addcmul(style_mean - content_mean * scale, content_feat, scale)


def normalize_weights(weights: Sequence[float] | torch.Tensor | None, num_styles: int) -> list[float]:
    """Check fusion weights and scale them to sum to one; ``None`` means equal weights.

    Parameters:
        weights: one finite weight >= 0 per style (a list, tuple or 1-D tensor), not all zero; or ``None``.
        num_styles: number of styles being fused.
    """
    if num_styles < 1:
        raise ValueError("pass at least one style image")
    if weights is None:
        return [1.0 / num_styles] * num_styles
    if hasattr(weights, "tolist"):  # torch tensors and numpy arrays
        weights = weights.tolist()
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise ValueError(f"weights must be a list of numbers, one per style image (e.g. weights=[0.7, 0.3]), got {weights!r}")
    try:
        values = [float(w) for w in weights]
    except (TypeError, ValueError):
        raise ValueError(f"weights must be numbers, one per style image (e.g. weights=[0.7, 0.3]), got {weights!r}") from None
    if len(values) != num_styles:
        raise ValueError(f"got {len(values)} weights for {num_styles} styles; pass one weight per style image")
    if any(not math.isfinite(w) or w < 0 for w in values):
        raise ValueError(f"weights must be finite and >= 0, got {values}; e.g. weights=[0.7, 0.3]")
    total = sum(values)
    if total <= 0:
        raise ValueError("weights sum to zero; give at least one style a positive weight")
    if not math.isfinite(total):
        raise ValueError(f"weights {values} are too large to add up; pass relative weights such as [0.7, 0.3]")
    return [w / total for w in values]


def fuse_style_stats(
    style_stats: Sequence[tuple[torch.Tensor, torch.Tensor]], weights: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted average of several styles' (mean, std).

    Because AdaIN is linear in the style statistics, AdaIN with fused statistics equals the weighted sum of the
    per-style AdaIN outputs (the interpolation of Huang & Belongie, Sec. 7), computed once instead of N times.
    """
    mean = sum(w * m for w, (m, _) in zip(weights, style_stats))
    std = sum(w * s for w, (_, s) in zip(weights, style_stats))
    return mean, std


def blend_content(stylized_feat: torch.Tensor, content_feat: torch.Tensor, alpha: float) -> torch.Tensor:
    """Content/style trade-off: ``alpha=1`` is full style, ``alpha=0`` gives back the content's own features."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (0 = content only, 1 = full style), got {alpha}")
    if alpha == 1.0:
        return stylized_feat
    return alpha * stylized_feat + (1.0 - alpha) * content_feat


def _whiten_color(feat: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, covariance square root and inverse square root of ``(C, H*W)`` features (float32 for stability)."""
    flat = feat.reshape(feat.shape[0], -1).float()
    mean = flat.mean(dim=1, keepdim=True)
    centered = flat - mean
    cov = centered @ centered.t() / max(centered.shape[1] - 1, 1)
    cov = cov + eps * torch.eye(cov.shape[0], device=cov.device, dtype=cov.dtype)
    evals, evecs = torch.linalg.eigh(cov)
    evals = evals.clamp_min(eps)
    sqrt = evecs @ torch.diag(evals.sqrt()) @ evecs.t()
    inv_sqrt = evecs @ torch.diag(evals.rsqrt()) @ evecs.t()
    return mean, sqrt, inv_sqrt


def whitening_coloring_transform(content_feat: torch.Tensor, style_feat: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """WCT (Li et al., 2017): match the full channel covariance of the style, not just per-channel mean/std.

    Parameters:
        content_feat: ``(N, C, H, W)``.
        style_feat: ``(N or 1, C, H', W')``; a batch of one is broadcast over the content batch.
    """
    outputs = []
    for i, content in enumerate(content_feat):
        style = style_feat[i if style_feat.shape[0] > 1 else 0]
        c_mean, _, c_inv_sqrt = _whiten_color(content, eps)
        s_mean, s_sqrt, _ = _whiten_color(style, eps)
        flat = content.reshape(content.shape[0], -1).float()
        colored = s_sqrt @ (c_inv_sqrt @ (flat - c_mean)) + s_mean
        outputs.append(colored.reshape(content.shape).to(content.dtype))
    return torch.stack(outputs)


def coral(source: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Recolour ``source`` (3, H, W) so its RGB mean and covariance match ``target`` (3, H', W').

    Used to pre-colour style images with the content's palette (Gatys et al., 2017, "colour histogram matching").
    """
    return whitening_coloring_transform(source[None], target[None], eps)[0]


_RGB_TO_YUV = torch.tensor([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]])


def rgb_to_yuv(image: torch.Tensor) -> torch.Tensor:
    """RGB ``(N, 3, H, W)`` to YUV (BT.601): Y is luminance, U and V are chroma."""
    return torch.einsum("ij,njhw->nihw", _RGB_TO_YUV.to(image), image)


def yuv_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_yuv`."""
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(_RGB_TO_YUV).to(image), image)


def transfer_luminance(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Keep the content's colours: the stylized image's luminance with the content's chroma (Gatys et al., 2016)."""
    if stylized.shape != content.shape:
        raise ValueError(f"stylized {tuple(stylized.shape)} and content {tuple(content.shape)} must have the same shape")
    stylized_yuv, content_yuv = rgb_to_yuv(stylized), rgb_to_yuv(content)
    return yuv_to_rgb(torch.cat([stylized_yuv[:, :1], content_yuv[:, 1:]], dim=1))


def gaussian_blur(mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` masks; soft mask edges avoid a visible seam between styles.

    A wide blur (``sigma`` of 16 pixels or more) is computed on a grid ``sigma / 8`` times coarser (area-averaged) and
    interpolated back: the result is smooth at that scale, so it differs from the full-size kernel by a fraction of
    an 8-bit level (0.2 measured), while time and memory no longer grow with ``sigma`` (a 6000x6000 pair of masks
    blurred by 120 px took 8 minutes and 5.6 GB with a full-size depthwise convolution).
    """
    if not math.isfinite(sigma):
        raise ValueError(f"blur sigma must be a finite number of pixels (0 = no blur), got {sigma}")
    if sigma <= 0:
        return mask
    height, width = mask.shape[2:]
    step = int(sigma // 8)
    if step < 2 or min(height, width) < 4 * step:
        return _blur_axes(mask, sigma, sigma)
    # Padded to whole cells, so the coarse grid lines up with the pixels exactly (a misaligned one shifts the edges).
    padded = F.pad(mask, (0, -width % step, 0, -height % step), mode="replicate")
    small = F.avg_pool2d(padded, step)
    del padded
    # The area average and the bilinear interpolation blur too (variances of step^2/12 and step^2/6): the coarse
    # kernel makes up the rest.
    inner = math.sqrt(sigma**2 - step**2 / 4) / step
    up = F.interpolate(_blur_axes(small, inner, inner), scale_factor=step, mode="bilinear", align_corners=False)
    return up[..., :height, :width]


def _blur_axes(mask: torch.Tensor, sigma_h: float, sigma_w: float) -> torch.Tensor:
    """The separable blur, as a weighted sum of shifted views (no im2col: memory is two copies of the mask)."""
    out = mask
    for dim, sigma in ((2, sigma_h), (3, sigma_w)):
        # Beyond the image, replicate padding adds nothing but cost, so the kernel is cropped there (and never built
        # larger than the image); it is then renormalised, so constant masks stay constant and per-pixel sums over
        # styles are preserved (an unnormalised cropped kernel darkens masks smaller than the blur).
        size = out.shape[dim]
        pad = min(max(1, int(3 * sigma)), size - 1)
        if pad <= 0:
            continue
        x = torch.arange(-pad, pad + 1, dtype=torch.float64)
        kernel = torch.exp(-(x**2) / (2 * sigma**2))
        kernel = (kernel / kernel.sum()).tolist()
        padded = F.pad(out, (0, 0, pad, pad) if dim == 2 else (pad, pad, 0, 0), mode="replicate")
        out = padded.narrow(dim, 0, size) * kernel[0]
        for shift in range(1, 2 * pad + 1):
            out.add_(padded.narrow(dim, shift, size), alpha=kernel[shift])
        del padded
    return out


def normalize_masks(masks: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Turn ``(N, S, H, W)`` region masks (one channel per style) into per-pixel weights that sum to one.

    Pixels that no mask covers share the styles equally, so no part of the image is left unstyled.
    """
    if masks.dim() != 4:
        raise ValueError(f"masks must be shaped (N, num_styles, H, W), got {tuple(masks.shape)}")
    if not torch.isfinite(masks).all() or (masks < 0).any():
        raise ValueError("masks must hold finite values >= 0 (0 = not this style, 1 = this style)")
    total = masks.sum(dim=1, keepdim=True)
    uncovered = (total <= eps).to(masks.dtype)
    masks = masks + uncovered / masks.shape[1]
    return masks / masks.sum(dim=1, keepdim=True)


def masked_adain(
    content_feat: torch.Tensor,
    style_stats: Sequence[tuple[torch.Tensor, torch.Tensor]],
    masks: torch.Tensor,
    content_stats: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> torch.Tensor:
    """Region-wise AdaIN: style ``i`` paints where ``masks[:, i]`` is high, with soft blending at the borders.

    Parameters:
        content_feat: ``(N, C, H, W)``.
        style_stats: one (mean, std) per style.
        masks: ``(N, S, H, W)`` per-pixel weights at feature resolution that sum to one (:func:`normalize_masks`).
        content_stats: optional (mean, std) of the content inside each region, measured elsewhere (whole image).
    """
    if masks.shape[1] != len(style_stats):
        raise ValueError(f"got {masks.shape[1]} masks for {len(style_stats)} styles; pass one mask per style")
    out = torch.zeros_like(content_feat)
    for i, (mean, std) in enumerate(style_stats):
        region = masks[:, i : i + 1]
        own = content_stats[i] if content_stats is not None else None
        out = out + region * adaptive_instance_normalization(content_feat, mean, std, mask=region, content_stats=own)
    return out


def feature_moments(feat: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-channel (weight, weighted sum, weighted sum of squares), shaped ``(3, N, C)`` in float64.

    Moments add up: summing them over the tiles of an image and passing the total to :func:`moments_to_mean_std`
    gives the statistics of the whole image without holding all of its features in memory.
    """
    feat = feat.double()
    weight = torch.ones_like(feat[:, :1]) if mask is None else mask.double()
    total = weight.sum(dim=(2, 3)).expand(-1, feat.shape[1])
    return torch.stack([total, (feat * weight).sum(dim=(2, 3)), (feat.square() * weight).sum(dim=(2, 3))])


def moments_to_mean_std(moments: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) shaped ``(N, C, 1, 1)`` from summed :func:`feature_moments`, as :func:`calc_mean_std` gives."""
    total, first, second = moments
    total = total.clamp_min(eps)
    mean = first / total
    var = (second / total - mean.square()).clamp_min(0)
    return mean[..., None, None].float(), (var + eps).sqrt()[..., None, None].float()
