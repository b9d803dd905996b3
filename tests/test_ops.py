"""Feature-space ops checked exactly on small tensors against hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hybridstyle import ops


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _correlated(n: int, c: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Features with channel correlations and per-channel offsets, like real activations."""
    g = _generator(seed)
    mix = torch.randn(c, c, generator=g)
    base = torch.randn(n, c, h * w, generator=g)
    return (mix @ base + torch.randn(1, c, 1, generator=g) * 3).reshape(n, c, h, w)


# ---- calc_mean_std / AdaIN ------------------------------------------------------------------------------------------


def test_calc_mean_std_matches_hand_computation() -> None:
    feat = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [[0.0, 0.0, 6.0], [0.0, 0.0, 0.0]]]])  # (1, 2, 2, 3)
    mean, std = ops.calc_mean_std(feat, eps=0.0)
    assert mean.shape == std.shape == (1, 2, 1, 1)
    # channel 0: mean 3.5, population variance (2.5^2+1.5^2+0.5^2)*2/6 = 35/12; channel 1: mean 1, variance 5
    torch.testing.assert_close(mean.flatten(), torch.tensor([3.5, 1.0]))
    torch.testing.assert_close(std.flatten(), torch.tensor([math.sqrt(35 / 12), math.sqrt(5.0)]))
    _, std_eps = ops.calc_mean_std(feat, eps=0.25)
    torch.testing.assert_close(std_eps.flatten(), torch.tensor([math.sqrt(35 / 12 + 0.25), math.sqrt(5.25)]))


def test_calc_mean_std_with_mask() -> None:
    feat = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]])  # (1, 1, 2, 3)
    hard = torch.tensor([[[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]])  # selects 1, 2, 6
    mean, std = ops.calc_mean_std(feat, hard, eps=0.0)
    values = np.array([1.0, 2.0, 6.0])
    assert mean.item() == pytest.approx(values.mean())
    assert std.item() == pytest.approx(values.std())
    soft = torch.tensor([[[[0.5, 0.0, 0.0], [0.0, 0.0, 1.5]]]])  # weights 0.5 on 1 and 1.5 on 6
    mean, std = ops.calc_mean_std(feat, soft, eps=0.0)
    weighted_mean = (0.5 * 1 + 1.5 * 6) / 2.0
    assert mean.item() == pytest.approx(weighted_mean)
    assert std.item() == pytest.approx(math.sqrt((0.5 * (1 - weighted_mean) ** 2 + 1.5 * (6 - weighted_mean) ** 2) / 2.0))
    full_mean, full_std = ops.calc_mean_std(feat, torch.ones(1, 1, 2, 3))
    torch.testing.assert_close((full_mean, full_std), ops.calc_mean_std(feat))


def test_calc_mean_std_rejects_non_4d() -> None:
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ops.calc_mean_std(torch.zeros(3, 4, 4))


def test_adain_output_has_style_statistics() -> None:
    content, style = _correlated(2, 5, 6, 7, seed=1), _correlated(2, 5, 9, 4, seed=2) * 4 + 2
    style_mean, style_std = ops.calc_mean_std(style)
    out = ops.adaptive_instance_normalization(content, style_mean, style_std)
    assert out.shape == content.shape
    out_mean, out_std = ops.calc_mean_std(out)
    torch.testing.assert_close(out_mean, style_mean, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out_std, style_std, rtol=1e-4, atol=1e-4)
    # The spatial pattern is the content's: AdaIN is an affine map per channel, so correlation with content is 1.
    for c in range(5):
        corr = np.corrcoef(out[0, c].flatten().numpy(), content[0, c].flatten().numpy())[0, 1]
        assert corr == pytest.approx(1.0, abs=1e-5)


# ---- weights, fusion, blending --------------------------------------------------------------------------------------


def test_normalize_weights_normalises() -> None:
    assert ops.normalize_weights([2, 6], 2) == pytest.approx([0.25, 0.75])
    assert ops.normalize_weights(torch.tensor([1.0, 1.0, 2.0]), 3) == pytest.approx([0.25, 0.25, 0.5])
    assert ops.normalize_weights(np.array([3.0, 1.0]), 2) == pytest.approx([0.75, 0.25])
    assert ops.normalize_weights([0, 5], 2) == pytest.approx([0.0, 1.0])
    assert ops.normalize_weights(None, 4) == pytest.approx([0.25] * 4)
    assert ops.normalize_weights(None, 1) == [1.0]


@pytest.mark.parametrize(
    ("weights", "num_styles", "message"),
    [
        ([0.5, -0.5], 2, r"finite and >= 0.*weights=\[0\.7, 0\.3\]"),
        ([float("nan"), 1.0], 2, r"finite and >= 0.*weights=\["),
        ([float("inf"), 1.0], 2, r"finite and >= 0"),
        ([1.0, 2.0, 3.0], 2, r"got 3 weights for 2 styles; pass one weight per style"),
        ([1.0], 2, r"pass one weight per style"),
        ([0.0, 0.0], 2, r"sum to zero; give at least one style a positive weight"),
        (0.5, 1, r"list of numbers, one per style"),
        ("0.5,0.5", 2, r"list of numbers, one per style"),
        (["a", "b"], 2, r"numbers, one per style"),
        (None, 0, r"at least one style"),
    ],
)
def test_normalize_weights_errors_say_what_to_pass(weights, num_styles: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ops.normalize_weights(weights, num_styles)


def test_fusion_with_weights_one_zero_is_first_style_alone() -> None:
    content = _correlated(1, 4, 5, 5, seed=3)
    a, b = _correlated(1, 4, 6, 6, seed=4), _correlated(1, 4, 6, 6, seed=5) * 3
    stats_a, stats_b = ops.calc_mean_std(a), ops.calc_mean_std(b)
    fused = ops.fuse_style_stats([stats_a, stats_b], [1.0, 0.0])
    assert torch.equal(fused[0], stats_a[0]) and torch.equal(fused[1], stats_a[1])
    assert torch.equal(
        ops.adaptive_instance_normalization(content, *fused), ops.adaptive_instance_normalization(content, *stats_a)
    )


def test_fused_adain_is_the_weighted_sum_of_per_style_adain() -> None:
    # The documented reason fusion works on statistics: AdaIN is linear in (mean, std).
    content = _correlated(1, 4, 5, 5, seed=6)
    styles = [_correlated(1, 4, 6, 6, seed=s) * (s + 1) for s in (7, 8, 9)]
    stats = [ops.calc_mean_std(s) for s in styles]
    weights = ops.normalize_weights([0.2, 0.5, 0.3], 3)
    fused = ops.adaptive_instance_normalization(content, *ops.fuse_style_stats(stats, weights))
    expected = sum(w * ops.adaptive_instance_normalization(content, *st) for w, st in zip(weights, stats))
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)


def test_blend_content() -> None:
    content, stylized = _correlated(1, 3, 4, 4, seed=10), _correlated(1, 3, 4, 4, seed=11)
    assert torch.equal(ops.blend_content(stylized, content, 0.0), content)
    assert torch.equal(ops.blend_content(stylized, content, 1.0), stylized)
    torch.testing.assert_close(ops.blend_content(stylized, content, 0.25), 0.25 * stylized + 0.75 * content)


@pytest.mark.parametrize("alpha", [-0.01, 1.01, 2.0, float("nan")])
def test_blend_content_rejects_alpha_outside_unit_interval(alpha: float) -> None:
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        ops.blend_content(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), alpha)


# ---- WCT / CORAL ----------------------------------------------------------------------------------------------------


def _covariance(feat: torch.Tensor) -> torch.Tensor:
    flat = feat.reshape(feat.shape[0], -1).double()
    return torch.cov(flat)


def test_wct_output_covariance_matches_style() -> None:
    content = _correlated(2, 4, 12, 12, seed=12)
    style = _correlated(1, 4, 10, 11, seed=13) * 2 + 1
    out = ops.whitening_coloring_transform(content, style)
    assert out.shape == content.shape and out.dtype == content.dtype
    style_cov = _covariance(style[0])
    for i in range(2):  # a style batch of one is broadcast over the content batch
        torch.testing.assert_close(_covariance(out[i]), style_cov, rtol=1e-3, atol=1e-3 * style_cov.abs().max().item())
        torch.testing.assert_close(out[i].mean(dim=(1, 2)), style[0].mean(dim=(1, 2)), rtol=1e-4, atol=1e-4)
    # Per-channel statistics alone (AdaIN) do not match the cross-channel covariance; WCT does more than AdaIN.
    adain = ops.adaptive_instance_normalization(content, *ops.calc_mean_std(style))
    assert (_covariance(adain[0]) - style_cov).abs().max() > 10 * (_covariance(out[0]) - style_cov).abs().max()


def test_coral_matches_rgb_mean_and_covariance() -> None:
    source = torch.rand(3, 16, 16, generator=_generator(14))
    target = _correlated(1, 3, 20, 20, seed=15)[0] * 0.1 + 0.5
    out = ops.coral(source, target)
    assert out.shape == source.shape
    torch.testing.assert_close(_covariance(out), _covariance(target), rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(out.mean(dim=(1, 2)), target.mean(dim=(1, 2)), rtol=1e-4, atol=1e-5)


# ---- colour --------------------------------------------------------------------------------------------------------


def test_rgb_yuv_round_trip_and_known_values() -> None:
    rgb = torch.rand(2, 3, 5, 7, generator=_generator(16))
    torch.testing.assert_close(ops.yuv_to_rgb(ops.rgb_to_yuv(rgb)), rgb, rtol=1e-5, atol=1e-5)
    white_grey_black = torch.tensor([1.0, 0.5, 0.0]).view(1, 1, 3, 1).expand(1, 3, 3, 1)
    yuv = ops.rgb_to_yuv(white_grey_black)
    torch.testing.assert_close(yuv[0, 0, :, 0], torch.tensor([1.0, 0.5, 0.0]), rtol=0, atol=1e-6)  # Y = grey level
    # Greys have no chroma (up to the 1e-5 rounding of the published BT.601 U coefficients, which sum to 1e-5).
    torch.testing.assert_close(yuv[0, 1:], torch.zeros(2, 3, 1), rtol=0, atol=2e-5)
    red = ops.rgb_to_yuv(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)).flatten()
    torch.testing.assert_close(red, torch.tensor([0.299, -0.14713, 0.615]))


def test_transfer_luminance_keeps_content_chroma_and_stylized_luminance() -> None:
    stylized = torch.rand(1, 3, 6, 8, generator=_generator(17))
    content = torch.rand(1, 3, 6, 8, generator=_generator(18))
    out = ops.transfer_luminance(stylized, content)
    out_yuv, content_yuv, stylized_yuv = ops.rgb_to_yuv(out), ops.rgb_to_yuv(content), ops.rgb_to_yuv(stylized)
    torch.testing.assert_close(out_yuv[:, 1:], content_yuv[:, 1:], rtol=0, atol=1e-5)
    torch.testing.assert_close(out_yuv[:, :1], stylized_yuv[:, :1], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        ops.transfer_luminance(stylized, content[:, :, :4])


# ---- masks ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(5, 7), (1, 9), (40, 40)])
@pytest.mark.parametrize("sigma", [0.5, 4.0, 20.0])
def test_gaussian_blur_preserves_constants(size: tuple[int, int], sigma: float) -> None:
    mask = torch.full((1, 2, *size), 0.7)
    out = ops.gaussian_blur(mask, sigma)
    assert out.shape == mask.shape
    torch.testing.assert_close(out, mask, rtol=0, atol=1e-6)


@pytest.mark.parametrize("sigma", [1.0, 6.0])
def test_gaussian_blur_preserves_per_pixel_sums_and_mass(sigma: float) -> None:
    # Masks that sum to one per pixel still sum to one after blurring, so blurred masks need no renormalising.
    left = torch.zeros(1, 1, 12, 20)
    left[..., :9] = 1
    masks = torch.cat([left, 1 - left], dim=1)
    blurred = ops.gaussian_blur(masks, sigma)
    torch.testing.assert_close(blurred.sum(dim=1), torch.ones(1, 12, 20), rtol=0, atol=1e-6)
    assert 0 < blurred[0, 0, 6, 9].item() < 1  # the edge became soft
    # A point far from the borders keeps its total mass (the kernel is normalised).
    delta = torch.zeros(1, 1, 41, 41)
    delta[..., 20, 20] = 1
    assert ops.gaussian_blur(delta, sigma).sum().item() == pytest.approx(1.0, abs=1e-5)


def test_gaussian_blur_edge_cases() -> None:
    mask = torch.rand(1, 1, 4, 4, generator=_generator(19))
    assert ops.gaussian_blur(mask, 0) is mask
    with pytest.raises(ValueError, match="finite"):
        ops.gaussian_blur(mask, float("nan"))


def test_normalize_masks_sums_to_one_and_fills_uncovered_pixels() -> None:
    masks = torch.zeros(1, 3, 2, 2)
    masks[0, 0, 0, 0], masks[0, 1, 0, 0] = 3.0, 1.0  # covered by two styles, 3:1
    masks[0, 2, 0, 1] = 0.2  # covered by one style, weakly
    out = ops.normalize_masks(masks)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(1, 2, 2))
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0.75, 0.25, 0.0]))
    torch.testing.assert_close(out[0, :, 0, 1], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(out[0, :, 1, 0], torch.full((3,), 1 / 3))  # uncovered: shared equally
    torch.testing.assert_close(out[0, :, 1, 1], torch.full((3,), 1 / 3))


@pytest.mark.parametrize(
    ("masks", "message"),
    [
        (torch.full((1, 2, 2, 2), -0.5), ">= 0"),
        (torch.full((1, 2, 2, 2), float("nan")), "finite"),
        (torch.ones(2, 2, 2), r"\(N, num_styles, H, W\)"),
    ],
)
def test_normalize_masks_rejects_bad_masks(masks: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ops.normalize_masks(masks)


def test_masked_adain_gives_each_region_its_own_style() -> None:
    content = _correlated(1, 4, 8, 10, seed=20)
    styles = [_correlated(1, 4, 6, 6, seed=21) * 2 + 5, _correlated(1, 4, 6, 6, seed=22) * 0.5 - 3]
    stats = [ops.calc_mean_std(s) for s in styles]
    left = torch.zeros(1, 1, 8, 10)
    left[..., :4] = 1
    masks = torch.cat([left, 1 - left], dim=1)
    out = ops.masked_adain(content, stats, masks)
    assert out.shape == content.shape
    for region, (mean, std) in zip((left, 1 - left), stats):
        out_mean, out_std = ops.calc_mean_std(out, mask=region)
        torch.testing.assert_close(out_mean, mean, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(out_std, std, rtol=1e-3, atol=1e-3)
    # One region covering everything is plain AdaIN.
    everywhere = torch.cat([torch.ones(1, 1, 8, 10), torch.zeros(1, 1, 8, 10)], dim=1)
    torch.testing.assert_close(
        ops.masked_adain(content, stats, everywhere), ops.adaptive_instance_normalization(content, *stats[0])
    )
    with pytest.raises(ValueError, match="pass one mask per style"):
        ops.masked_adain(content, stats, torch.ones(1, 3, 8, 10) / 3)
