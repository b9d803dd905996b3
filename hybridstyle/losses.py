"""Training losses: content, style (mean/std or Gram), teacher features, total variation and adversarial."""

from __future__ import annotations

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
