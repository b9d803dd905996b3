"""Measure how much stylized video flickers, per-frame vs temporally stabilised (``hybridstyle.video``).

    python scripts/measure_flicker.py                                   # bundled model, generated clip
    python scripts/measure_flicker.py --model hybridstyle-base --json flicker.json
    python scripts/measure_flicker.py --clip my_video.mp4 --style hybridstyle/examples/styles/gc_GreatWave.jpg

Without ``--clip`` it first makes a real H.264 clip from a photo: a slow pan and zoom (so the per-frame feature
statistics drift as content enters and leaves the frame) with changing light (so they also swing back and forth), ~2 s
at 320 px. ``--lighting global`` oscillates the whole frame's brightness by +-8%; ``--lighting local`` pulses a soft
light over part of the frame (a lamp, a reflection, a passing car), the case where per-frame normalisation repaints
the whole frame because of one region. Each variant is then stylized with ``stylize_video`` and read back.

Reported per variant:

- ``flicker``: mean absolute difference between consecutive output frames divided by that of the input frames. Motion
  makes both move, so ~1 is "changes as much as the input does"; flicker pushes it up.
- ``warped_error`` (generated clips only, whose camera motion is known exactly): mean absolute difference between
  each output frame and the previous output frame moved by the true camera motion, over the pixels both frames see,
  in [0, 1] units. This is motion-compensated: 0 would be perfectly stable. ``warped_ratio`` divides it by the
  input's own warped error (which is not 0: brightness changes and compression).
- ``stable_warped_error``: the same, only where the input itself is stable (after undoing the motion): change where
  nothing changed, i.e. flicker and swimming texture, not the output following a real change of light. This is the
  figure stabilisation is for; ``flicker`` also rewards an output that ignores real changes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from hybridstyle.image_io import load_image  # noqa: E402
from hybridstyle.video import stylize_video  # noqa: E402

EXAMPLES = REPO_ROOT / "hybridstyle" / "examples"
DEFAULT_PHOTO = EXAMPLES / "content" / "gc_monument_neuschwansteinCastle.jpg"
DEFAULT_STYLE = EXAMPLES / "styles" / "gc_GreatWave.jpg"

# Camera of the generated clip, as a function of time t in [0, 1]: the window's left/top edge and its zoom (source
# pixels per output pixel), all in the coordinates of the photo resized to a long side of SOURCE_SCALE * size.
SOURCE_SCALE = 1.6
ZOOM = (1.35, 1.1)  # slow zoom in; above 1, so bilinear sampling does not magnify (blur) the photo
PAN = 0.18  # fraction of the photo's width the window travels
BRIGHTNESS_AMPLITUDE = 0.08  # --lighting global: the whole frame, +-8% at 1 Hz
BRIGHTNESS_HZ = 1.0
SPOT_AMPLITUDE = 0.6  # --lighting local: a soft spot (Gaussian, sigma a fifth of the width) pulsing +-60% at 3 Hz
SPOT_HZ = 3.0
SPOT_SIGMA = 0.2
# A pixel counts as stable in the input when it changed by less than this (mean over RGB) after undoing the camera
# motion: compression noise and resampling stay below, the pulsing light and the brightness swings go above.
STABLE_BELOW = 0.03

Camera = Callable[[float], tuple[float, float, float]]


# ---- the test clip ---------------------------------------------------------------------------------------------


def make_clip(photo: str | Path, path: Path, size: int = 320, seconds: float = 2.0, fps: int = 24,
              lighting: str = "global") -> Camera:
    """Write a pan/zoom clip of ``photo`` with changing light (``"global"`` or ``"local"``) to ``path`` (H.264,
    near-lossless).

    Returns the camera (t in [0, 1] -> left, top, zoom) so that :func:`warped_error` can undo the motion exactly.
    """
    image = load_image(photo, "photo")
    scale = SOURCE_SCALE * size / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    source = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    src_h, src_w = source.shape[2:]
    # Keep the photo's aspect ratio in the clip; sides a multiple of 16 (every model's downsample factor divides it).
    aspect = src_h / src_w
    width, height = (size, round(size * aspect / 16) * 16) if aspect <= 1 else (round(size / aspect / 16) * 16, size)

    def camera(t: float) -> tuple[float, float, float]:
        zoom = ZOOM[0] + (ZOOM[1] - ZOOM[0]) * t
        left = (src_w - width * zoom) * (0.5 - PAN / 2) + PAN * src_w * t * 0.5
        top = (src_h - height * zoom) * (0.5 - 0.05 * t)
        return left, top, zoom

    if lighting not in ("global", "local"):
        raise ValueError(f"lighting must be 'global' or 'local', got {lighting!r}")
    # The spot is fixed in the frame (a light in front of the camera, not in the scene), upper left of centre.
    y, x = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    spot = torch.exp(-((x - 0.35 * width) ** 2 + (y - 0.4 * height) ** 2) / (2 * (SPOT_SIGMA * width) ** 2))
    frames = max(2, round(seconds * fps))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in tqdm(range(frames), desc="making the clip", unit="frame", leave=False):
            t = i / (frames - 1)
            left, top, zoom = camera(t)
            grid = _grid(width, height, left, top, zoom, src_w, src_h)
            frame = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
            if lighting == "global":
                frame = frame * (1 + BRIGHTNESS_AMPLITUDE * math.sin(2 * math.pi * BRIGHTNESS_HZ * t * seconds))
            else:
                frame = frame * (1 + SPOT_AMPLITUDE * math.sin(2 * math.pi * SPOT_HZ * t * seconds) * spot)
            array = (frame[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return camera


def _grid(width: int, height: int, left: float, top: float, zoom: float, ref_w: float, ref_h: float) -> torch.Tensor:
    """grid_sample grid (1, H, W, 2): output pixel centre (x + 0.5) sits at left + (x + 0.5) * zoom in the reference
    image of size (ref_w, ref_h); normalised for align_corners=False."""
    xs = left + (torch.arange(width, dtype=torch.float64) + 0.5) * zoom
    ys = top + (torch.arange(height, dtype=torch.float64) + 0.5) * zoom
    gx, gy = 2 * xs / ref_w - 1, 2 * ys / ref_h - 1
    return torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None].float()


# ---- the measures ----------------------------------------------------------------------------------------------


def read_frames(path: Path) -> Iterator[torch.Tensor]:
    """The decoded frames of a video as (1, 3, H, W) float tensors in [0, 1], one at a time."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)[None].float() / 255


def mean_consecutive_difference(path: Path) -> float:
    """Mean over frame pairs of the mean absolute difference between consecutive frames."""
    total, pairs, previous = 0.0, 0, None
    for frame in read_frames(path):
        if previous is not None:
            total += (frame - previous).abs().mean().item()
            pairs += 1
        previous = frame
    return total / max(pairs, 1)


def _warped_differences(path: Path, camera: Camera) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Per frame pair: |frame - previous frame moved by the known camera motion| (1, 3, H, W) and where it is defined."""
    with av.open(str(path)) as container:
        count = container.streams.video[0].frames or sum(1 for _ in container.decode(video=0))  # 0: not in the header
    previous = None
    for i, frame in enumerate(read_frames(path)):
        if previous is not None:
            height, width = frame.shape[2:]
            left, top, zoom = camera(i / (count - 1))
            prev_left, prev_top, prev_zoom = camera((i - 1) / (count - 1))
            # Frame i's pixel centre shows photo point left + (x + 0.5) * zoom; in frame i-1 that point is at pixel
            # centre (point - prev_left) / prev_zoom: the same affine map, with frame i-1 as the reference image.
            grid = _grid(width, height, (left - prev_left) / prev_zoom, (top - prev_top) / prev_zoom, zoom / prev_zoom,
                         width, height)
            warped = F.grid_sample(previous, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            # Pixels that frame i-1 did not see (or saw only at its border) are left out.
            valid = (grid.abs() < 1 - 2 / min(width, height)).all(dim=-1)[:, None]
            yield (frame - warped).abs(), valid
        previous = frame


def warped_error(path: Path, camera: Camera, stable_in: Path | None = None) -> float:
    """Mean absolute difference between each frame and the previous one moved by the known camera motion.

    With ``stable_in`` (the input clip), only over the pixels where that clip itself is stable (its warped difference
    under STABLE_BELOW): how much the output changes where nothing changed, i.e. flicker and swimming texture, not
    the output following a real change of light.
    """
    total, count = 0.0, 0
    reference = _warped_differences(stable_in, camera) if stable_in is not None else None
    for difference, valid in _warped_differences(path, camera):
        if reference is not None:
            valid = valid & (next(reference)[0].mean(dim=1, keepdim=True) < STABLE_BELOW)
        mask = valid.expand_as(difference)
        total += difference[mask].sum().item()
        count += mask.sum().item()
    return total / max(count, 1)


def measure(model, clip: Path, style: str | Path, out_dir: Path, camera: Camera | None = None,
            smoothing: float = 0.9, temporal_blend: float = 0.5, progress: bool = True) -> dict:
    """Stylize ``clip`` per-frame, stabilised and stabilised with temporal blending; return the measures as a dict."""
    variants = {
        "per-frame": {"stabilize": False},
        "stabilised": {"stabilize": True, "smoothing": smoothing},
    }
    if temporal_blend:
        variants["stabilised+blend"] = {"stabilize": True, "smoothing": smoothing, "temporal_blend": temporal_blend}
    input_difference = mean_consecutive_difference(clip)
    results = {"input": {"consecutive_difference": input_difference}}
    if camera is not None:
        results["input"]["warped_error"] = warped_error(clip, camera)
    for name, options in tqdm(variants.items(), desc="variants", disable=not progress):
        output = out_dir / f"{clip.stem}-{name}.mp4"
        stylize_video(model, clip, style, output, progress=progress, **options)
        difference = mean_consecutive_difference(output)
        row = {"consecutive_difference": difference, "flicker": difference / input_difference}
        if camera is not None:
            row["warped_error"] = warped_error(output, camera)
            row["warped_ratio"] = row["warped_error"] / results["input"]["warped_error"]
            row["stable_warped_error"] = warped_error(output, camera, stable_in=clip)
        results[name] = row
    return results


def format_table(results: dict) -> str:
    columns = ("flicker", "warped_error", "warped_ratio", "stable_warped_error", "consecutive_difference")
    lines = [f"{'variant':<18}" + "".join(f"{c:>23}" for c in columns)]
    for name, row in results.items():
        cells = "".join(f"{row[c]:>23.4f}" if row.get(c) is not None else f"{'-':>23}" for c in columns)
        lines.append(f"{name:<18}" + cells)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--clip", help="video to measure on (default: generate clips from --photo)")
    parser.add_argument("--photo", default=str(DEFAULT_PHOTO), help="photo the generated clips pan over")
    parser.add_argument("--style", default=str(DEFAULT_STYLE), help="style image")
    parser.add_argument("--model", default=None, help="model folder, bundled name or Hub id (default: the bundled model)")
    parser.add_argument("--size", type=int, default=320, help="long side of the generated clips")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the generated clips")
    parser.add_argument("--fps", type=int, default=24, help="frame rate of the generated clips")
    parser.add_argument("--lighting", nargs="+", choices=("global", "local"), default=["global", "local"],
                        help="generated clips: whole-frame brightness oscillation, and/or a pulsing light over part of it")
    parser.add_argument("--smoothing", type=float, default=0.9, help="stabilisation's moving-average weight")
    parser.add_argument("--temporal-blend", type=float, default=0.5, help="third variant's temporal blend (0: skip it)")
    parser.add_argument("--out-dir", help="keep the clips and the stylized videos here (default: a temporary folder)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    from hybridstyle import HybridStyle

    model = HybridStyle.from_pretrained(args.model).eval()
    report = {"model": f"{type(model).__name__} ({args.model or 'bundled default'})", "style": args.style, "clips": {}}
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(args.out_dir or tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        if args.clip:
            clips = {args.clip: (Path(args.clip), None)}
        else:
            clips = {}
            for lighting in args.lighting:
                path = out_dir / f"{lighting}.mp4"
                camera = make_clip(args.photo, path, args.size, args.seconds, args.fps, lighting)
                clips[f"{Path(args.photo).name}, pan+zoom, {lighting} lighting, {args.size} px, {args.fps} fps"] = (path, camera)
        for name, (path, camera) in clips.items():
            results = measure(model, path, args.style, out_dir, camera, args.smoothing, args.temporal_blend)
            report["clips"][name] = results
            print(f"\n{report['model']}, {name}\n{format_table(results)}")
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
