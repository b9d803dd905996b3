"""MultiScaleDiscriminator (common model checks, shapes, gradients) and the training losses."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import ModelTesterMixin

from hybridstyle import MultiScaleDiscriminator
from hybridstyle import losses as L


def _conv_out(size: int, stride: int) -> int:
    return (size + 2 * 1 - 4) // stride + 1  # every conv is 4x4 with padding 1


def _expected_logit_size(size: int, num_layers: int) -> int:
    size = _conv_out(size, 2)
    for i in range(1, num_layers):
        size = _conv_out(size, 2 if i < num_layers - 1 else 1)
    return _conv_out(size, 1)


class TestMultiScaleDiscriminator(ModelTesterMixin):
    model_class = MultiScaleDiscriminator

    def init_kwargs(self) -> dict:
        return {"base_channels": 4, "num_layers": 3, "num_scales": 3}

    def inputs(self) -> dict:
        return {"images": torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(0))}

    @pytest.mark.parametrize(("num_layers", "num_scales"), [(1, 1), (3, 2), (3, 3), (4, 2)])
    def test_output_shape_per_scale(self, num_layers: int, num_scales: int) -> None:
        model = MultiScaleDiscriminator(base_channels=4, num_layers=num_layers, num_scales=num_scales).eval()
        logits = model(torch.rand(2, 3, 64, 48))
        assert isinstance(logits, list) and len(logits) == num_scales
        height, width = 64, 48
        for scale, logit in enumerate(logits):
            if scale:
                height, width = (height + 1) // 2, (width + 1) // 2  # avg_pool 3, stride 2, padding 1
            expected = (2, 1, _expected_logit_size(height, num_layers), _expected_logit_size(width, num_layers))
            assert tuple(logit.shape) == expected, (scale, tuple(logit.shape), expected)

    def test_gradients_reach_every_parameter_and_the_input(self) -> None:
        model = self.make_model().train()
        fake = torch.rand(2, 3, 64, 48, requires_grad=True)
        # lsgan, not hinge: with hinge the last bias's gradient cancels exactly while both terms are active.
        loss = L.discriminator_loss(model(torch.rand(2, 3, 64, 48)), model(fake), "lsgan")
        loss.backward()
        for name, param in model.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        assert fake.grad is not None and fake.grad.abs().sum() > 0  # the generator is trained through D

    def test_spectral_norm_bounds_the_weights(self) -> None:
        model = self.make_model().train()
        for _ in range(30):  # power iteration converges over forward passes in training mode
            model(torch.rand(1, 3, 64, 64))
        model.eval()
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                sigma = torch.linalg.matrix_norm(module.weight.reshape(module.weight.shape[0], -1), ord=2)
                assert sigma.item() < 1.1
        plain = MultiScaleDiscriminator(base_channels=4, use_spectral_norm=False)
        assert not any("parametrizations" in name for name, _ in plain.named_parameters())

    @pytest.mark.parametrize(("num_layers", "num_scales"), [(1, 1), (3, 2), (3, 3)])
    def test_too_small_images_get_a_clear_error(self, num_layers: int, num_scales: int) -> None:
        model = MultiScaleDiscriminator(base_channels=2, num_layers=num_layers, num_scales=num_scales).eval()
        side = model.min_size
        assert all(logit.numel() > 0 for logit in model(torch.rand(1, 3, side, side + 3)))
        with pytest.raises(ValueError, match=f"too small for {num_scales} scales.*at least {side} pixels"):
            model(torch.rand(1, 3, side + 3, side - 1))
        with pytest.raises(ValueError, match=r"images must be \(N, 3, H, W\)"):
            model(torch.rand(3, side, side))

    def test_invalid_config(self) -> None:
        with pytest.raises(ValueError, match="num_scales and num_layers must be >= 1"):
            MultiScaleDiscriminator(num_scales=0)


# ---- adversarial losses --------------------------------------------------------------------------------------------


def _logits(value: float) -> list[torch.Tensor]:
    return [torch.full((2, 1, 5, 5), value), torch.full((2, 1, 2, 2), value)]


# "Real" and "fake" logit levels: LSGAN regresses to targets 1 and 0, hinge and BCE score logits around 0.
LEVELS = {"lsgan": (1.0, 0.0), "hinge": (3.0, -3.0), "bce": (3.0, -3.0)}


@pytest.mark.parametrize("kind", L.GAN_LOSSES)
def test_discriminator_loss_rewards_telling_real_from_fake(kind: str) -> None:
    high, low = LEVELS[kind]
    good = L.discriminator_loss(_logits(high), _logits(low), kind)
    confused = L.discriminator_loss(_logits((high + low) / 2), _logits((high + low) / 2), kind)
    wrong = L.discriminator_loss(_logits(low), _logits(high), kind)
    assert good.ndim == 0 and torch.isfinite(good)
    assert good < confused < wrong


@pytest.mark.parametrize("kind", L.GAN_LOSSES)
def test_generator_loss_rewards_fooling_the_discriminator(kind: str) -> None:
    high, low = LEVELS[kind]
    assert L.generator_adversarial_loss(_logits(high), kind) < L.generator_adversarial_loss(_logits(low), kind)


def test_gan_losses_known_values() -> None:
    real, fake = [torch.tensor([[1.0, 0.5]])], [torch.tensor([[0.0, -2.0]])]
    assert L.discriminator_loss(real, fake, "lsgan").item() == pytest.approx(0.5 * ((0 + 0.25) / 2 + (0 + 4) / 2))
    assert L.discriminator_loss(real, fake, "hinge").item() == pytest.approx((0 + 0.5) / 2 + (1 + 0) / 2)
    assert L.generator_adversarial_loss(fake, "hinge").item() == pytest.approx(1.0)
    assert L.generator_adversarial_loss(fake, "lsgan").item() == pytest.approx(0.5 * (1 + 9) / 2)
    # bce at logit 0 is log 2 for both the real and the fake term
    assert L.discriminator_loss(_logits(0.0), _logits(0.0), "bce").item() == pytest.approx(2 * math.log(2))


def test_unknown_gan_loss_raises() -> None:
    with pytest.raises(ValueError, match=r"gan loss must be one of \('lsgan', 'hinge', 'bce'\), got 'wgan'"):
        L.discriminator_loss(_logits(0.0), _logits(0.0), "wgan")
    with pytest.raises(ValueError, match="gan loss must be one of"):
        L.generator_adversarial_loss(_logits(0.0), "wgan")


# ---- content, style, tv, diversity ---------------------------------------------------------------------------------


def _features(seed: int, scale: float = 1.0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(2, c, s, s, generator=g) * scale for c, s in ((4, 16), (8, 8), (16, 4))]


def test_content_loss() -> None:
    a, b = _features(0)[1], _features(1)[1]
    assert L.content_loss(a, a).item() == 0
    loss = L.content_loss(a, b)
    assert loss.item() == pytest.approx(((a - b) ** 2).mean().item() / (b**2).mean().item(), rel=1e-5)
    # Scale-free: the same relative error gives the same loss whatever the feature magnitude.
    assert L.content_loss(a * 1000, b * 1000).item() == pytest.approx(loss.item(), rel=1e-4)


@pytest.mark.parametrize("kind", ["meanstd", "gram"])
def test_style_loss_zero_for_identical_features_positive_otherwise(kind: str) -> None:
    feats = _features(2)
    assert L.style_loss(feats, [f.clone() for f in feats], kind).item() == pytest.approx(0.0, abs=1e-7)
    other = _features(3, scale=3.0)
    assert L.style_loss(feats, other, kind).item() > 0.1
    # Only statistics count: a spatially shuffled copy has the same mean/std and Gram matrix.
    shuffled = [f.flatten(2)[..., torch.randperm(f.shape[2] * f.shape[3])].reshape(f.shape) for f in feats]
    assert L.style_loss(shuffled, feats, kind).item() == pytest.approx(0.0, abs=1e-5)


def test_style_loss_gradient_and_errors() -> None:
    out = [f.requires_grad_() for f in _features(4)]
    L.style_loss(out, _features(5, scale=2.0), "gram").backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in out)
    with pytest.raises(ValueError, match="style loss kind must be 'meanstd', 'gram' or 'both', got 'cosine'"):
        L.style_loss(_features(4), _features(5), "cosine")
    with pytest.raises(ValueError):  # one list shorter than the other: a silent zip would drop layers
        L.style_loss(_features(4), _features(5)[:2])


def test_gram_matrix_by_hand() -> None:
    feat = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, 2, 1, 2)
    expected = torch.tensor([[[1 + 4, 3 + 8], [3 + 8, 9 + 16]]]) / 4.0  # divided by c*h*w = 4
    torch.testing.assert_close(L.gram_matrix(feat), expected)


def test_total_variation_loss() -> None:
    assert L.total_variation_loss(torch.full((1, 3, 5, 5), 0.3)).item() == 0
    ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 3, 4)  # +1 per column, constant down the rows
    assert L.total_variation_loss(ramp).item() == pytest.approx(1.0)


def _strokes(seed: int, n: int = 4, size: int = 128) -> torch.Tensor:
    """Smooth random texture: noise blurred to strokes a few pixels wide, as a painting has (no regular grid)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(noise, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def test_grid_loss_finds_a_decoders_grid_and_leaves_strokes_alone() -> None:
    strokes, photo = _strokes(0), _strokes(1)
    rows, cols = torch.meshgrid(torch.arange(128), torch.arange(128), indexing="ij")
    checker = 0.03 * ((rows + cols) % 2 * 2 - 1).float()  # a 2-px checkerboard, 3% of the range: faint, as in base
    columns = 0.03 * (cols // 2 % 2 * 2 - 1).float()  # 4-px vertical stripes
    assert L.grid_loss(strokes, photo).item() == 0  # texture is not a grid
    assert L.grid_peaks(strokes + checker).max() > 3  # its peak: >20x the spectrum at the same radius
    assert L.grid_loss(strokes + checker, photo).item() > 0.2
    assert L.grid_loss(strokes + columns, photo).item() > 0.2
    # A grid the content already has (a photo's own) is not charged to the decoder.
    assert L.grid_loss(strokes + checker, photo + checker).item() == 0
    # The gradient removes the grid: one step against it lowers the checkerboard's amplitude, not the strokes.
    image = (strokes + checker).requires_grad_(True)
    L.grid_loss(image, photo).backward()
    step = -image.grad / image.grad.abs().max() * 0.01
    amplitude = lambda x: ((x - strokes) * checker.sign()).mean()  # noqa: E731
    assert amplitude(strokes + checker + step) < amplitude(strokes + checker) - 1e-3
    assert L.grid_loss(torch.rand(1, 3, 7, 7), torch.rand(1, 3, 7, 7)).item() == 0  # under 4 periods: no loss


def test_diversity_loss() -> None:
    g = torch.Generator().manual_seed(6)
    images = torch.rand(4, 3, 16, 16, generator=g, requires_grad=True)
    styles = torch.rand(4, 8, 4, 4, generator=g)
    loss = L.diversity_loss(images, styles)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    # Identical outputs for different styles (mode collapse) cost more than diverse outputs.
    collapsed = images.detach()[:1].expand(4, -1, -1, -1)
    assert torch.isfinite(L.diversity_loss(collapsed, styles))
    assert L.diversity_loss(collapsed, styles) > L.diversity_loss(images.detach(), styles)
    assert L.diversity_loss(images[:1], styles[:1]).item() == 0  # nothing to compare in a batch of one
