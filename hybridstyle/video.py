"""Stylize video files frame by frame, with temporally stable colours.

    from hybridstyle import HybridStyle
    from hybridstyle.video import stylize_video

    model = HybridStyle.from_pretrained()
    stylize_video(model, "walk.mp4", "starry_night.jpg", "walk_starry.mp4")

Per-frame AdaIN flickers: every frame is normalised with its own feature statistics, so a light that pulses in one
corner, a bright object entering or compression noise shifts the statistics and with them the colours of the whole
frame. Here each level's content statistics are smoothed over time (an exponential moving average), so the
normalisation drifts slowly instead of jumping and a local change stays local; a scene cut resets the average. The
flip side: a change of light over the whole frame, which per-frame normalisation cancels, now shows in the output as
it does in the input. Optionally, pixels whose input did not change are blended with the previous output, which calms
texture shimmer in still regions (no optical flow). ``scripts/measure_flicker.py`` measures both effects.

Reading and writing use PyAV (FFmpeg's libraries, bundled in its wheels): H.264 (yuv420p, plays everywhere) in MP4,
MOV or MKV, at the input's frame rate; the input's first audio track is copied unchanged. Frames are stylized one at
a time (memory does not grow with the video's length) and the styles' statistics are computed once. The output is
written to a temporary file beside it and renamed at the end: a failure or Ctrl-C leaves no half-written video.

Importing this module is cheap (torch loads on first use), so the command line can import it for its parser.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import secrets
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
from PIL import Image

from .registry import MODEL_CHOICE_HELP

if TYPE_CHECKING:
    import torch

    from .image_io import ImageInput
    from .modeling_hybridstyle import HybridStyle

# Container by output extension; all take H.264. WebM (VP8/VP9 only) and GIF are left out on purpose.
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
VIDEO_CODEC = "libx264"
DEFAULT_CRF = 18  # x264 quality: 18 is visually near-lossless; stylized frames are all fine texture, which lower quality smears
DEFAULT_MAX_SIZE = 2048
# Scene-cut detection: a frame whose deepest-level channel means move, on average, by more than this many of the
# running standard deviations is a new shot and restarts the moving average (instead of fading over ~1/(1-smoothing)
# frames from the old shot's colours). The scale is the model's: measured on hybridstyle-base (relu4_1, 192 px, 12 fps),
# a pan and zoom with +-8% brightness stays under 0.07 and cuts between photos give 0.36-0.42. To re-measure for
# another model (hybridstyle-fast's deepest level differs).
SCENE_CUT_THRESHOLD = 0.2
# Temporal blend: an input change of this size (mean over RGB, in [0, 1]) already counts as motion, so moving pixels are
# not blended with the previous output (no ghosting); compression noise (~1/255) stays well below it.
MOTION_SCALE = 0.03


class VideoError(ValueError):
    """A video could not be read or written; the message says which file and what to do."""


@dataclass
class VideoInfo:
    """What :func:`stylize_video` wrote."""

    path: Path
    frames: int
    fps: Fraction
    width: int
    height: int
    audio: bool  # whether the input's audio track was copied


def stylize_video(
    model: HybridStyle,
    input_path: str | os.PathLike,
    style: ImageInput | Sequence[ImageInput],
    output_path: str | os.PathLike,
    weights: Sequence[float] | None = None,
    alpha: float = 1.0,
    preserve_color: bool = False,
    style_scale: float = 1.0,
    stabilize: bool = True,
    smoothing: float = 0.9,
    scene_cut: float | None = SCENE_CUT_THRESHOLD,
    temporal_blend: float = 0.0,
    size: int | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    crf: int = DEFAULT_CRF,
    audio: bool = True,
    progress: bool = True,
) -> VideoInfo:
    """Paint every frame of a video in the style of one or several images and write the result as H.264.

    Parameters:
        model: a :class:`~hybridstyle.HybridStyle` (or ``HybridStyleFast``), on any device and dtype.
        input_path: any video FFmpeg reads (MP4, MOV, MKV, WebM, AVI, ...).
        style: one style image (path, PIL image or array) or a list of them.
        output_path: ``.mp4``, ``.m4v``, ``.mov`` or ``.mkv``; its folder is created if missing; an existing file is
            replaced only once the new video is complete.
        weights: how much of each style to fuse (normalised; default equal).
        alpha: style strength in [0, 1].
        preserve_color: keep each frame's colours (only the luminance is stylized).
        style_scale: size at which styles are read, relative to the frames; larger gives finer strokes.
        stabilize: smooth the content statistics over time (``False``: plain per-frame stylization, which flickers).
        smoothing: weight of the past in the moving average of the statistics, in [0, 1): 0.9 averages over about ten
            frames; higher is steadier but adapts more slowly to lighting changes.
        scene_cut: restart the average when the deepest level's channel means jump by more than this many running
            standard deviations (a new shot); ``None`` never restarts. The default is tuned on hybridstyle-base.
        temporal_blend: in [0, 1): how much of the previous output to keep where the input did not change (calms
            texture shimmer in still regions; moving regions are never blended). 0 turns it off.
        size: long side, in pixels, to stylize and write at (the aspect ratio is kept); ``None`` keeps the input's
            size. Use it to downscale large videos.
        max_size: largest long side accepted, in pixels, a guard against videos that would take hours.
        crf: H.264 quality (0-51, lower is better and larger).
        audio: copy the input's first audio track (dropped, with a warning, if the output container cannot hold its
            codec; ``.mkv`` holds them all).
        progress: show a progress bar.

    Returns:
        a :class:`VideoInfo` (path, frame count, frame rate, size, whether audio was copied).

    Raises:
        VideoError: missing, damaged or non-video input, a video without frames, frames larger than ``max_size``, an
            output folder that cannot be written or an unsupported output extension. Bad style images raise
            :class:`~hybridstyle.ImageLoadError`. Nothing is left at ``output_path`` after any error.
    """
    from . import ops
    from .image_io import load_image

    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    weights = ops.normalize_weights(weights, len(styles))
    _check_arguments(alpha, style_scale, smoothing, scene_cut, temporal_blend, size, max_size, crf)
    source_path, target_path = Path(input_path), Path(output_path)
    container_format = _check_paths(source_path, target_path)
    style_images = [load_image(s, f"style {i + 1}") for i, s in enumerate(styles)]

    with _open_input(source_path) as source, _atomic_output(target_path) as temporary:
        video = source.streams.video[0]
        out_size = _output_size((video.codec_context.width, video.codec_context.height), size, max_size, source_path)
        sound = source.streams.audio[0] if audio and source.streams.audio else None
        items = _read(source, video, sound, source_path)
        # The first frame says whether the video is turned (phones store portrait as rotated landscape); audio packets
        # that come before it wait for the output to exist.
        early_audio = []
        first = next(items, None)
        while isinstance(first, av.Packet):
            early_audio.append(first)
            first = next(items, None)
        if first is None:
            raise VideoError(f"input: {str(source_path)!r} has a video stream but no frames to read; check that the file "
                             "is complete (re-export or re-download it)")
        if _quarter_turns(first) % 2:
            out_size = out_size[::-1]
        stylizer = _FrameStylizer(model, style_images, weights, alpha, style_scale, out_size, max_size, preserve_color,
                                  smoothing if stabilize else None, scene_cut, temporal_blend)
        fps = video.average_rate or video.guessed_rate
        if not fps:
            warnings.warn(f"{source_path} does not say its frame rate; writing it at 25 fps", stacklevel=2)
            fps = Fraction(25)

        with av.open(str(temporary), "w", format=container_format,
                     options={"movflags": "+faststart"} if container_format in ("mp4", "mov") else {}) as target:
            stream = target.add_stream(VIDEO_CODEC, rate=fps, options={"crf": str(crf)})
            stream.width, stream.height = out_size
            stream.pix_fmt = "yuv420p"  # the only chroma layout every player and browser decodes
            if sound is not None and sound.codec_context.name not in target.supported_codecs:
                warnings.warn(f"the audio ({sound.codec_context.name}) cannot go into a {target_path.suffix} file and is "
                              "dropped; write a .mkv to keep it", stacklevel=2)
                sound = None
            sound_out = target.add_stream_from_template(sound) if sound is not None else None

            count, last_pts = 0, -1
            with _progress_bar(video.frames or None, progress) as bar:
                for item in itertools.chain(early_audio, [first], items):
                    if isinstance(item, av.Packet):
                        if sound_out is not None:
                            item.stream = sound_out
                            target.mux(item)
                        continue
                    out = av.VideoFrame.from_ndarray(np.asarray(stylizer(_upright(item))), format="rgb24")
                    # Timestamps from the input's, on the output's 1/fps grid: variable frame rate input stays in sync
                    # with its audio (to within a frame) and no two frames share a timestamp.
                    pts = round(item.time * fps) if item.time is not None else count
                    last_pts = out.pts = max(pts, last_pts + 1)
                    for packet in stream.encode(out):
                        target.mux(packet)
                    count += 1
                    bar.update()
            for packet in stream.encode():  # flush the frames the encoder holds back for look-ahead
                target.mux(packet)
    return VideoInfo(target_path, count, Fraction(fps), *out_size, audio=sound_out is not None)


def check_video_job(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    size: int | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
) -> tuple[int, int]:
    """Every check of :func:`stylize_video` that needs no model, writing nothing: the output's extension is known and
    its folder writable, the input is a readable video whose frames (at ``size``) fit ``max_size``.

    The command line runs it before loading the model, so a typo costs a second, not a model load. Returns the
    output's (width, height) as the video stores it (a video with a rotation tag is turned when it is read).
    Raises :class:`VideoError` as :func:`stylize_video` would.
    """
    if size is not None and size < 16:
        raise ValueError(f"size (--size) is the output's long side in pixels, at least 16; got {size}")
    source_path, target_path = Path(input_path), Path(output_path)
    _check_paths(source_path, target_path)
    with _open_input(source_path) as source:
        video = source.streams.video[0]
        out_size = _output_size((video.codec_context.width, video.codec_context.height), size, max_size, source_path)
    with _atomic_output(target_path, keep=False):
        pass
    return out_size


def _check_paths(source_path: Path, target_path: Path) -> str:
    """The output's container format, after the checks that need no file to be opened."""
    container_format = _output_format(target_path)
    _check_input_path(source_path)
    if target_path.exists() and target_path.resolve() == source_path.resolve():
        raise VideoError(f"output: {str(target_path)!r} is the input video; choose another output path")
    return container_format


# ---- the per-frame transform ------------------------------------------------------------------------------------


class _FrameStylizer:
    """Stylizes one frame at a time with style statistics computed once and content statistics smoothed over time."""

    def __init__(self, model: HybridStyle, style_images: list[Image.Image], weights: list[float], alpha: float,
                 style_scale: float, out_size: tuple[int, int], max_size: int, preserve_color: bool,
                 smoothing: float | None, scene_cut: float | None, temporal_blend: float):
        from .image_io import pil_to_tensor
        from .stylize_images import style_tensor
        from .tiling import feature_statistics

        self.model, self.weights, self.alpha, self.preserve_color = model, weights, alpha, preserve_color
        self.smoothing, self.scene_cut, self.temporal_blend = smoothing, scene_cut, temporal_blend
        self.out_size = out_size
        factor = model.downsample_factor
        self.work_size = tuple(max(2 * factor, round(s / factor) * factor) for s in out_size)  # as stylize's
        # The styles are sized as model.stylize sizes them for one frame, so a frame of the video and the same image
        # stylized alone get the same strokes.
        style_long_side = min(max_size, max(64, round(max(self.work_size) * style_scale)))
        self.style_levels = []
        for image in style_images:
            tensor = style_tensor(image, style_long_side, factor).to(model.device, model.dtype)
            # Tiled (memory bounded by the tile) but with the whole image's statistics, which come back in float32:
            # cast to the model's dtype, or AdaIN would hand a bfloat16 decoder float32 features.
            stats = feature_statistics(model, tensor, tile=1024)
            self.style_levels.append([(m.to(model.dtype), d.to(model.dtype)) for m, d in stats])
        self._pil_to_tensor = pil_to_tensor
        self.running: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.previous: tuple[torch.Tensor, torch.Tensor] | None = None  # (input, output) of the last frame, for blending

    def __call__(self, frame: Image.Image) -> Image.Image:
        import torch

        with torch.inference_mode():
            return self._stylize(frame)

    def _stylize(self, frame: Image.Image) -> Image.Image:
        import torch
        import torch.nn.functional as F

        from . import ops
        from .image_io import tensor_to_pil

        model = self.model
        # Each size straight from the decoded frame (one resampling, not two).
        content = self._pil_to_tensor(frame.resize(self.work_size, Image.LANCZOS)).to(model.device, model.dtype)
        if frame.size != self.out_size:
            frame = frame.resize(self.out_size, Image.LANCZOS)
        levels = model.feature_levels(content)
        content_stats = None
        if self.smoothing is not None:
            current = [ops.calc_mean_std(level.float()) for level in levels]
            if self.running is None or self._is_cut(current):
                self.running = current
            else:
                s = self.smoothing
                self.running = [(s * m + (1 - s) * cm, s * d + (1 - s) * cd)
                                for (m, d), (cm, cd) in zip(self.running, current)]
            content_stats = [(m.to(model.dtype), d.to(model.dtype)) for m, d in self.running]
        targets = model.transform_levels(levels, self.style_levels, self.weights, self.alpha, content_stats=content_stats)
        images = model.decode_levels(targets, tuple(content.shape[2:])).float().clamp(0, 1).cpu()
        if images.shape[2:] != (self.out_size[1], self.out_size[0]):
            images = self._pil_to_tensor(tensor_to_pil(images).resize(self.out_size, Image.LANCZOS))
        original = self._pil_to_tensor(frame)
        if self.preserve_color:
            images = ops.transfer_luminance(images, original).clamp(0, 1)
        if self.temporal_blend and self.previous is not None:
            last_input, last_output = self.previous
            change = (original - last_input).abs().mean(dim=1, keepdim=True)
            change = F.avg_pool2d(change, 5, stride=1, padding=2, count_include_pad=False)  # noise is not motion
            still = torch.exp(-((change / MOTION_SCALE) ** 2))  # 1 where the input did not change, 0 where it moved
            images = images + self.temporal_blend * still * (last_output - images)
        if self.temporal_blend:
            self.previous = (original, images)
        return tensor_to_pil(images)

    def _is_cut(self, current: list[tuple[torch.Tensor, torch.Tensor]]) -> bool:
        """Whether the deepest level's channel means moved by more than ``scene_cut`` running standard deviations."""
        if self.scene_cut is None:
            return False
        (mean, _), (running_mean, running_std) = current[-1], self.running[-1]
        return bool(((mean - running_mean).abs() / running_std).mean() > self.scene_cut)


# ---- reading ----------------------------------------------------------------------------------------------------


def _check_input_path(path: Path) -> None:
    if path.is_dir():
        raise VideoError(f"input: {str(path)!r} is a folder; pass the path of one video file inside it")
    if not path.is_file():
        raise VideoError(f"input: no such file {str(path)!r}; check the path (relative paths start from {os.getcwd()!r})")


@contextmanager
def _open_input(path: Path) -> Iterator[av.container.InputContainer]:
    """The opened input, checked to hold a video stream that is not a still image."""
    try:
        source = av.open(str(path), "r")
    except av.FFmpegError as err:
        raise VideoError(f"input: {str(path)!r} is not a video FFmpeg can read ({_reason(err)}); check that it is a "
                         "complete video file (MP4, MOV, MKV, WebM, AVI, ...) or re-export it") from None
    try:
        if not source.streams.video:
            kinds = ", ".join(sorted({s.type for s in source.streams})) or "nothing"
            raise VideoError(f"input: {str(path)!r} has no video stream (it holds {kinds}); pass a video file")
        if source.format.name.endswith("_pipe") or source.format.name == "image2":
            raise VideoError(f"input: {str(path)!r} is a still image, not a video; use model.stylize "
                             "(or `hybridstyle stylize`) for images")
        yield source
    finally:
        source.close()


def _read(source: av.container.InputContainer, video: av.VideoStream, sound: av.AudioStream | None,
          path: Path) -> Iterator[av.VideoFrame | av.Packet]:
    """The video's decoded frames and the audio's packets (to copy as they are), in the file's order."""
    video.thread_type = "AUTO"  # frame-parallel decoding; the decoder is rarely the bottleneck, but it is free
    packets = source.demux(*([video] + ([sound] if sound is not None else [])))
    decoded = 0
    while True:
        # Only reading is guarded here: an error while writing is not the input's fault and keeps its own message.
        try:
            packet = next(packets, None)
            frames = packet.decode() if packet is not None and packet.stream is video else []
        except av.FFmpegError as err:
            raise VideoError(f"input: {str(path)!r} is damaged after frame {decoded} ({_reason(err)}); re-export or "
                             "repair it (or cut it before that point)") from None
        if packet is None:
            return
        if packet.stream is not video and packet.dts is not None:  # dts None: end-of-stream marker, not data
            yield packet
        for frame in frames:
            decoded += 1
            yield frame


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that show ``frame`` upright, from its display matrix (as np.rot90 counts)."""
    return round(frame.rotation / 90) % 4


def _upright(frame: av.VideoFrame) -> Image.Image:
    """The frame as an RGB image, turned as the video's display matrix says (phones film portrait as rotated
    landscape); without this, and since the output carries no rotation tag, portrait videos would come out sideways."""
    array = frame.to_ndarray(format="rgb24")
    turns = _quarter_turns(frame)
    return Image.fromarray(np.ascontiguousarray(np.rot90(array, turns)) if turns else array)


# ---- writing ----------------------------------------------------------------------------------------------------


def _output_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        given = f"{suffix!r}" if suffix else "no extension"
        raise VideoError(f"output: {str(path)!r} has {given}; name it .mp4 (or {', '.join(list(OUTPUT_FORMATS)[1:])})")
    return OUTPUT_FORMATS[suffix]


@contextmanager
def _atomic_output(path: Path, keep: bool = True) -> Iterator[Path]:
    """A new temporary file beside ``path``, renamed to ``path`` when the block succeeds and deleted when it fails
    (``keep=False``: deleted either way, a pure permission check).

    Creating it is the permission check: it happens before any frame is stylized, and (unlike ``os.access``) also
    holds for root, read-only file systems and network folders. Folders created for the output are removed on failure.
    """
    if path.is_dir():
        raise VideoError(f"output: {str(path)!r} is a folder; pass a file name such as {str(path / 'stylized.mp4')!r}")
    folder = path.parent
    created = []
    try:
        for parent in reversed([folder, *folder.parents]):
            if not parent.exists():
                parent.mkdir()
                created.append(parent)
        # Not tempfile.mkstemp: that makes the file private (0600), which the rename would keep; os.open applies the
        # user's umask like any other new file. Hidden (dot) name, so a file manager does not show a growing video.
        temporary = folder / f".{path.stem}.{secrets.token_hex(4)}.partial{path.suffix}"
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as err:
        _remove_folders(created)
        raise VideoError(f"output: cannot write in {str(folder)!r} ({err.strerror or err}); choose a folder you can "
                         "write to, or fix its permissions") from None
    try:
        yield temporary
        if keep:
            os.replace(temporary, path)
            return
    except BaseException:  # also KeyboardInterrupt: Ctrl-C must not leave a half-written video
        _discard(temporary, created)
        raise
    _discard(temporary, created)


def _discard(temporary: Path, created: list[Path]) -> None:
    with suppress(OSError):
        os.unlink(temporary)
    _remove_folders(created)


def _remove_folders(created: list[Path]) -> None:
    for folder in reversed(created):
        with suppress(OSError):
            folder.rmdir()


def _output_size(header_size: tuple[int, int], size: int | None, max_size: int, path: Path) -> tuple[int, int]:
    """(width, height) to write: the input's, or scaled to a long side of ``size``; checked against ``max_size``."""
    width, height = header_size
    if width <= 0 or height <= 0:
        raise VideoError(f"input: {str(path)!r} does not say its frame size; re-export it")
    if size is not None:
        scale = size / max(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    if max(width, height) > max_size:
        raise VideoError(
            f"input: {str(path)!r} has {width}x{height} frames, over max_size={max_size}; downscale it with "
            f"size={min(max_size, 1280)} (--size {min(max_size, 1280)}), or pass max_size={max(width, height)} "
            f"(--max-size {max(width, height)}) to stylize at full size (slow)"
        )
    if min(width, height) < 16:
        raise VideoError(f"input: frames of {width}x{height} are too small; each side needs at least 16 pixels")
    # yuv420p stores colour at half resolution, so H.264 needs even sides; odd ones lose (resample away) one pixel.
    return width // 2 * 2, height // 2 * 2


@contextmanager
def _progress_bar(total: int | None, enabled: bool) -> Iterator:
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="frame", desc="stylizing", disable=not enabled) as bar:
        yield bar


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)


def _check_arguments(alpha: float, style_scale: float, smoothing: float, scene_cut: float | None, temporal_blend: float,
                     size: int | None, max_size: int, crf: int) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (0 = content only, 1 = full style), got {alpha}")
    if not (math.isfinite(style_scale) and style_scale > 0):
        raise ValueError(f"style_scale must be > 0 (1 = read styles at the frames' size), got {style_scale}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1) (0 = per frame, 0.9 = about ten frames), got {smoothing}")
    if scene_cut is not None and not (math.isfinite(scene_cut) and scene_cut > 0):
        raise ValueError(f"scene_cut must be > 0 (in standard deviations) or None, got {scene_cut}")
    if not 0.0 <= temporal_blend < 1.0:
        raise ValueError(f"temporal_blend must be in [0, 1) (0 = off), got {temporal_blend}")
    if size is not None and size < 16:
        raise ValueError(f"size is the output's long side in pixels (at least 16), got {size}")
    if max_size < 16:
        raise ValueError(f"max_size must be at least 16 pixels, got {max_size}")
    if not 0 <= crf <= 51:
        raise ValueError(f"crf is H.264's quality, 0 (lossless) to 51 (worst); 18 is near-lossless. Got {crf}")


# ---- command line -----------------------------------------------------------------------------------------------


def add_video_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``hybridstyle video in.mp4 style.jpg -o out.mp4`` to the ``hybridstyle`` command's subparsers."""
    # Each help says its default itself: ArgumentDefaultsHelpFormatter printed "(default: True)" for --no-audio and
    # --no-stabilize (the value of the destination, the opposite of what the flag does) and doubled others.
    video = subparsers.add_parser("video", help="stylize a video file (temporally stabilised)")
    video.add_argument("input", help="video file (MP4, MOV, MKV, WebM, AVI, ...)")
    video.add_argument("styles", nargs="+", help="one or more style images; several are fused")
    video.add_argument("-o", "--output", default="stylized.mp4",
                       help="output video: .mp4, .m4v, .mov or .mkv (H.264) (default stylized.mp4)")
    video.add_argument("--weights", type=float, nargs="+", help="fusion weight per style (normalised; default equal)")
    video.add_argument("--alpha", type=float, default=1.0, help="style strength: 0 = content, 1 = full style (default 1)")
    video.add_argument("--preserve-color", action="store_true", help="keep the video's colours (default: the styles' colours)")
    video.add_argument("--style-scale", type=float, default=1.0,
                       help="size styles are read at, vs the frames; >1 = finer strokes (default 1)")
    video.add_argument("--no-stabilize", dest="stabilize", action="store_false",
                       help="stylize each frame on its own (flickers more); without it, each frame's statistics are "
                            "smoothed over time")
    video.add_argument("--smoothing", type=float, default=0.9,
                       help="weight of the past in the moving average, in [0, 1) (default 0.9)")
    video.add_argument("--temporal-blend", type=float, default=0.0,
                       help="keep this much of the previous output where the input did not move, in [0, 1) "
                            "(default 0: off)")
    video.add_argument("--size", type=int, help="long side to stylize and write at (default: the input's size)")
    video.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE,
                       help=f"largest long side accepted (default {DEFAULT_MAX_SIZE})")
    video.add_argument("--crf", type=int, default=DEFAULT_CRF,
                       help=f"H.264 quality, 0-51, lower is better (default {DEFAULT_CRF})")
    video.add_argument("--no-audio", dest="audio", action="store_false",
                       help="write the video without sound; without it, the input's first audio track is copied")
    video.add_argument("--model", default=None, help=f"model folder, bundled name or Hub id (default: {MODEL_CHOICE_HELP})")
    video.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1, mps (default cpu)")
    video.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                       help="compute dtype (default float32; float16 needs a GPU)")
    return video


def run_video(args: argparse.Namespace) -> int:
    """Run the ``video`` subcommand; returns the exit code (errors are printed, not raised)."""
    try:
        # Everything that needs no model first (paths, sizes, output folder, device, dtype): a typo costs a second.
        check_video_job(args.input, args.output, args.size, args.max_size)
        from .devices import check_device, check_dtype

        device = check_device(args.device)
        check_dtype(device, args.dtype)
        import torch

        from .modeling_hybridstyle import HybridStyle

        model = HybridStyle.from_pretrained(args.model, torch_dtype=getattr(torch, args.dtype)).to(device).eval()
        info = stylize_video(
            model, args.input, args.styles, args.output, weights=args.weights, alpha=args.alpha,
            preserve_color=args.preserve_color, style_scale=args.style_scale, stabilize=args.stabilize,
            smoothing=args.smoothing, temporal_blend=args.temporal_blend, size=args.size, max_size=args.max_size,
            crf=args.crf, audio=args.audio, progress=sys.stderr.isatty(),
        )
    except KeyboardInterrupt:
        print("hybridstyle: interrupted; no output was written", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, ImportError, OSError, RuntimeError) as err:
        # ValueError covers VideoError and ImageLoadError; RuntimeError e.g. --device cuda without CUDA.
        print(f"hybridstyle: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {info.path} ({info.frames} frames, {info.width}x{info.height}, {float(info.fps):.3g} fps"
          f"{', with audio' if info.audio else ''})")
    return 0
