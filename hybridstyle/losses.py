"""Training losses: content, style (mean/std or Gram), teacher features, total variation, grid and adversarial."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .ops import calc_mean_std

GAN_LOSSES = ("lsgan", "hinge", "bce")
STYLE_LOSSES = ("meanstd", "gram", "both")


def content_loss(output_features: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
    """MSE between the output's relu4_1 and the AdaIN target it was decoded from (Huang & Belongie, 2017).

    Divided by the target's mean square so the loss is O(1) whatever the feature scale (Caffe VGG features of
    0-255 input are ~1000x larger than those of [0, 1] input) and loss weights transfer between encoders.
    """
    output_features, target_features = output_features.float(), target_features.float()
    return F.mse_loss(output_features, target_features) / target_features.pow(2).mean().detach().clamp_min(1e-8)


def feature_matching_loss(output_features: Sequence[torch.Tensor], target_features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of :func:`content_loss` between the output's features and a teacher image's (distillation).

    Every layer, relu1_1 to relu4_1, counts: the fine layers carry the teacher's strokes, which relu4_1 alone (the
    content loss) lets the student blur away.
    """
    pairs = list(zip(output_features, target_features, strict=True))
    return sum(content_loss(out, target) for out, target in pairs) / len(pairs)


def gram_matrix(feat: torch.Tensor) -> torch.Tensor:
    """Channel correlations ``(N, C, C)`` normalised by the number of elements (Gatys et al., 2016)."""
    n, c, h, w = feat.shape
    flat = feat.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def style_loss(
    output_features: Sequence[torch.Tensor], style_features: Sequence[torch.Tensor], kind: str = "meanstd"
) -> torch.Tensor:
    """Sum over layers of the distance between output and style statistics.

    ``kind="meanstd"`` compares per-channel mean and std (what AdaIN matches); ``kind="gram"`` compares Gram matrices
    (channel correlations: texture, which a colour shift cannot fake); ``kind="both"`` adds the two.
    Each layer is divided by the style statistics' mean square, so layers count equally and the loss is O(1).
    """
    if kind == "both":
        return style_loss(output_features, style_features, "meanstd") + style_loss(output_features, style_features, "gram")
    loss = output_features[0].new_zeros(())
    for out, style in zip(output_features, style_features, strict=True):
        if kind == "meanstd":
            out_mean, out_std = calc_mean_std(out.float())
            style_mean, style_std = calc_mean_std(style.float())
            scale = (style_mean.pow(2).mean() + style_std.pow(2).mean()).detach().clamp_min(1e-8)
            loss = loss + (F.mse_loss(out_mean, style_mean) + F.mse_loss(out_std, style_std)) / scale
        elif kind == "gram":
            style_gram = gram_matrix(style.float())
            scale = style_gram.pow(2).mean().detach().clamp_min(1e-8)
            loss = loss + F.mse_loss(gram_matrix(out.float()), style_gram) / scale
        else:
            raise ValueError(f"style loss kind must be 'meanstd', 'gram' or 'both', got {kind!r}")
    return loss


def total_variation_loss(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels; discourages high-frequency noise."""
    return (images[:, :, 1:] - images[:, :, :-1]).abs().mean() + (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().mean()


def grid_frequency_bins(height: int, width: int, periods: Sequence[int]) -> list[tuple[int, int]]:
    """The (row, column) bins of a ``height`` x ``width`` FFT where a regular grid of each of ``periods`` pixels peaks:
    horizontal, vertical and diagonal, per period; periods that repeat fewer than 4 times in the image are left out."""
    return [(round(dy * height / period) % height, round(dx * width / period) % width)
            for period in periods if min(height, width) >= 4 * period
            for dy, dx in ((1, 0), (0, 1), (1, 1))]


def grid_peaks(images: torch.Tensor, periods: Sequence[int] = (2, 4)) -> torch.Tensor:
    """The log amplitude ratio of a regular grid of each of ``periods`` pixels (horizontal, vertical, diagonal) to the
    spectrum around it, in a batch of images: one value per period and direction, ~0 for no grid.

    The grey images' Hann-windowed power spectrum, averaged over the batch (one small crop's spectrum is too noisy
    to tell a grid from texture), at the grid frequency (max over the 3x3 bins around it), over its median at the same
    radius. Strokes and textures spread over many frequencies; a decoder's grid is one peak.
    """
    grey = images.float().mean(dim=1)
    grey = grey - grey.mean(dim=(1, 2), keepdim=True)
    height, width = grey.shape[-2:]
    window = torch.outer(torch.hann_window(height, periodic=False, device=grey.device),
                         torch.hann_window(width, periodic=False, device=grey.device))
    power = torch.fft.fft2(grey * window).abs().pow(2).mean(dim=0)
    fy = torch.fft.fftfreq(height, device=grey.device).view(-1, 1)
    fx = torch.fft.fftfreq(width, device=grey.device).view(1, -1)
    radius = torch.hypot(fy, fx)
    rows, cols = torch.arange(height, device=grey.device).view(-1, 1), torch.arange(width, device=grey.device).view(1, -1)
    ratios = []
    for y, x in grid_frequency_bins(height, width, periods):
        peak = power[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].amax()
        # The ring without the peak's own neighbourhood, which the window's leakage lifts.
        near_y = ((rows - y) % height).minimum((y - rows) % height) <= 2
        near = near_y & (((cols - x) % width).minimum((x - cols) % width) <= 2)
        ring = ((radius - radius[y, x]).abs() < 4.0 / max(height, width)) & ~near
        level = power[ring].median().detach().clamp_min(1e-12)
        ratios.append(0.5 * torch.log(peak.clamp_min(1e-12) / level))
    return torch.stack(ratios) if ratios else images.new_zeros(0, dtype=torch.float32)


def grid_loss(images: torch.Tensor, reference: torch.Tensor, periods: Sequence[int] = (2, 4),
              tolerance: float = 1.5) -> torch.Tensor:
    """How far the decoded ``images`` show a regular grid beyond what their ``reference`` (the content batch) has.

    A decoder that upsamples by 2 learns a faint fixed-phase pattern at 2 and 4 px: it moves VGG19's relu1_1/relu2_1
    statistics towards the style's, so the style loss rewards it (hybridstyle-base's 512 px outputs peak at ~20x the
    spectrum around them at period 2, photos at ~1x). Penalised: each :func:`grid_peaks` ratio of ``images`` above the
    reference's (JPEG photos have 8-px block peaks of their own) times ``tolerance``; mean over periods and
    directions. Unlike total variation, this leaves strokes and textures alone.
    """
    with torch.no_grad():
        allowed = grid_peaks(reference, periods).clamp_min(0) + math.log(tolerance)
    return F.relu(grid_peaks(images, periods) - allowed).mean() if allowed.numel() else images.new_zeros(())


def discriminator_loss(real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor], kind: str) -> torch.Tensor:
    """Discriminator objective summed over scales: push real logits up and fake logits down."""
    loss = real_logits[0].new_zeros(())
    for real, fake in zip(real_logits, fake_logits, strict=True):
        real, fake = real.float(), fake.float()
        if kind == "lsgan":
            loss = loss + 0.5 * (((real - 1) ** 2).mean() + (fake**2).mean())
        elif kind == "hinge":
            loss = loss + F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        elif kind == "bce":
            loss = loss + F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            loss = loss + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        else:
            raise ValueError(f"gan loss must be one of {GAN_LOSSES}, got {kind!r}")
    return loss / len(real_logits)


def generator_adversarial_loss(fake_logits: Sequence[torch.Tensor], kind: str) -> torch.Tensor:
    """Generator objective summed over scales: make the discriminator call its outputs real."""
    loss = fake_logits[0].new_zeros(())
    for fake in fake_logits:
        fake = fake.float()
        if kind == "lsgan":
            loss = loss + 0.5 * ((fake - 1) ** 2).mean()
        elif kind == "hinge":
            loss = loss - fake.mean()
        elif kind == "bce":
            loss = loss + F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
        else:
            raise ValueError(f"gan loss must be one of {GAN_LOSSES}, got {kind!r}")
    return loss / len(fake_logits)


def diversity_loss(images: torch.Tensor, style_features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mode-seeking term (Mao et al., 2019) across the batch: outputs should differ as much as their styles do.

    Pairs each sample with the next one in the batch; returns the inverse of the ratio of image distance to
    style-feature distance, so minimising it stops the generator from painting every style the same way.
    """
    if images.shape[0] < 2:
        return images.new_zeros(())
    image_distance = (images - images.roll(1, 0)).abs().mean(dim=(1, 2, 3))
    mean, std = calc_mean_std(style_features.float())
    style_distance = ((mean - mean.roll(1, 0)).abs() + (std - std.roll(1, 0)).abs()).mean(dim=(1, 2, 3))
    return (style_distance / (image_distance.float() + eps)).mean() * 1e-2
