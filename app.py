"""HybridStyle Space: paint a photo in the style of one or several artworks (Gradio Blocks).

Run locally with ``python app.py`` (or as a Hugging Face Space: ``app_file: app.py``). The model is the bundled
default (hybridstyle-base) unless ``HYBRIDSTYLE_MODEL`` names another: a bundled name (``hybridstyle-fast``), a model
folder or a Hub id; ``HYBRIDSTYLE_DTYPE`` its dtype (default ``auto``: bfloat16 on CPUs with native bfloat16, else
float32). ``GRADIO_SERVER_NAME`` and
``GRADIO_SERVER_PORT`` choose where it listens; ``HYBRIDSTYLE_CONCURRENCY`` how many stylizations run at once.

Tests build the app around any model: ``demo = build_demo(model)``, then ``launch(demo, prevent_thread_lock=True)``.
The handlers are the methods of :class:`StyleApp` and can be called directly.

API (gradio_client), endpoint ``/stylize``::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    png_path = client.predict(content=handle_file("photo.jpg"), styles=[handle_file("a.jpg"), handle_file("b.jpg")],
                              weights=[0.7, 0.3], alpha=1.0, preserve_color=False, size=512, api_name="/stylize")

``quality="balanced"`` or ``"best"`` refines the result by optimisation (slower); the default ``"fast"`` does not.
``model="hybridstyle-fast"`` picks another of the Space's models (default: the one it serves).
"""

import os

# Before torch (or gradio, which may pull it in) loads: see hybridstyle/__init__.py, OpenMP spin-waiting on a busy CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import csv
import ctypes
import json
import math
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from hybridstyle import HybridStyle
from hybridstyle.devices import serving_dtype
from hybridstyle.image_io import ImageLoadError, load_image, load_mask
from hybridstyle.registry import BUNDLED_MODELS, DEFAULT_MODEL

EXAMPLES_DIR = Path(__file__).resolve().parent / "hybridstyle" / "examples"
MAX_STYLES = 4
SIZE_MIN, SIZE_MAX, SIZE_DEFAULT = 128, 1536, 512
# Above this long side a CPU request takes several times the 512 px time; visitors are warned, not refused.
SLOW_SIZE = 1024
MAX_FILE_SIZE = "20mb"
METHODS = ("adain", "wct")
# The quality dial (HybridStyle.stylize(quality=...)): the feed-forward output, or refined by optimisation in VGG19.
QUALITIES = ("fast", "balanced", "best")
# Finished PNGs are kept this long for the download link, then removed by the next request.
OUTPUT_TTL_SECONDS = 3600
# With one style and a region, the stylized photo is laid over the original through the region mask, blurred by this
# fraction of the long side (at least 1 px): enough to hide the brush's jagged edge, narrow enough to leave no fog.
REGION_FEATHER = 0.004
NO_CONTENT = "Add a content photo first: upload one, paste it, or click an example below."
NO_STYLE = "Pick at least one style: click an artwork in the gallery or upload your own image into a style slot."
IMAGE_FORMATS = "use a PNG, JPEG, WebP, BMP or TIFF file"


# Memory under load (issue 15): glibc keeps what a request freed in per-thread arenas, and Gradio runs each request on
# whichever of its worker threads is free, so the resident memory of a busy app climbed from 460 MB idle towards 1.7 GB
# and stayed there. Two arenas instead of glibc's 8 per core, and the freed pages handed back after every stylization.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h


def _load_glibc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim.argtypes, libc.mallopt.argtypes = [ctypes.c_size_t], [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return None
    return libc


_GLIBC = _load_glibc()


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas (unless ``MALLOC_ARENA_MAX`` is set, which glibc reads itself); False off glibc.

    Threads started afterwards share these arenas instead of each getting one that keeps its own freed memory."""
    if _GLIBC is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(_GLIBC.mallopt(_M_ARENA_MAX, arenas))


def release_memory() -> bool:
    """Hand the memory freed by the last stylization back to the system (glibc ``malloc_trim``); False off glibc."""
    return bool(_GLIBC.malloc_trim(0)) if _GLIBC is not None else False


@dataclass(frozen=True)
class Wording:
    """How error messages name the inputs and say what to do instead: UI words for visitors, parameter names for
    API callers (who see no gallery, slots or brush). ``style`` and ``weight`` are formatted with ``n`` (1-based)
    and ``i`` (0-based)."""

    no_content: str
    no_style: str
    content: str
    style: str
    weight: str
    alpha: str
    size: str
    style_scale: str
    all_weights_zero: str
    rest_weights_zero: str
    mask: str
    empty_mask: str
    mask_proportions: str
    region_method: str


UI_WORDS = Wording(
    no_content=NO_CONTENT,
    no_style=NO_STYLE,
    content="content photo",
    style="style {n}",
    weight="weight of style {n}",
    alpha="Style strength (alpha)",
    size="Output size",
    style_scale="Style scale",
    all_weights_zero="All style weights are 0: raise the weight of at least one style.",
    rest_weights_zero="The styles for the unpainted area all have weight 0: raise the weight of style 2 (or another one).",
    mask="region mask",
    empty_mask="The region mask is empty: paint (white) where the first style should go.",
    mask_proportions="paint the mask over the content photo (same proportions)",
    region_method="Region styles with several styles work with the AdaIN method; using AdaIN for this image.",
)
API_WORDS = Wording(
    no_content="content is missing: pass the photo to stylize, e.g. content=handle_file('photo.jpg')",
    no_style="styles is empty: pass at least one style image, e.g. styles=[handle_file('wave.jpg')]",
    content="content",
    style="styles[{i}]",
    weight="weights[{i}]",
    alpha="alpha",
    size="size",
    style_scale="style_scale",
    all_weights_zero="weights are all 0: give at least one style a weight above 0, e.g. weights=[1.0, 0.0]",
    rest_weights_zero="with a mask, styles[1:] paint outside it, but their weights are all 0: give one of them a "
                      "weight above 0, e.g. weights=[1.0, 1.0]",
    mask="mask",
    empty_mask="mask is all black: white marks where styles[0] paints; pass mask=None to stylize the whole image",
    mask_proportions="pass a mask with the content's proportions (white where styles[0] paints)",
    region_method="a mask with several styles needs method='adain'; using adain",
)


@dataclass(frozen=True)
class ExampleImage:
    """A bundled example image and the attribution shown in the UI (from ``hybridstyle/examples/SOURCES.csv``)."""

    path: str
    title: str
    author: str
    licence: str


def load_examples(folder: Path = EXAMPLES_DIR) -> dict[str, list[ExampleImage]]:
    """Read the bundled example images and their credits, grouped by kind (``"styles"``, ``"content"``).

    Parameters:
        folder: the examples folder holding ``SOURCES.csv``, ``styles/`` and ``content/``.
    """
    groups: dict[str, list[ExampleImage]] = {"styles": [], "content": []}
    with open(folder / "SOURCES.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            kind = row["example"].split("/", 1)[0]
            author = row["author"].split(" | ")[0]  # photo rows append the source URL after " | "
            groups[kind].append(ExampleImage(str(folder / row["example"]), row["title"], author, row["licence"]))
    return groups


EXAMPLES = load_examples()


def _title_for(image: Any) -> str:
    # Gradio caches a picked gallery image under its original file name, so the name identifies it.
    name = Path(image).name if isinstance(image, (str, os.PathLike)) else ""
    for example in EXAMPLES["styles"]:
        if Path(example.path).name == name:
            return example.title
    return "your image"


def credits_markdown() -> str:
    """The attribution table for every bundled example image."""
    lines = ["| Image | Author | Licence |", "|---|---|---|"]
    for example in EXAMPLES["styles"] + EXAMPLES["content"]:
        lines.append(f"| {example.title} | {example.author} | {example.licence} |")
    return (
        "Example images come from Debian packages; each keeps its licence (see `hybridstyle/examples/SOURCES.csv` "
        "for the package, original path and size).\n\n" + "\n".join(lines)
    )


# Folders that hold uploads on the server (Gradio's cache lives under the temp folder unless GRADIO_TEMP_DIR moves it).
_SERVER_DIRS = [d for d in (tempfile.gettempdir(), os.environ.get("GRADIO_TEMP_DIR")) if d]
_SERVER_PATH_DIRS = re.compile("|".join(re.escape(d.rstrip("/\\")) + r"[\\/](?:[^\s'\"\\/]*[\\/])*" for d in _SERVER_DIRS))
# A quoted absolute path, as in image_io's and PIL's messages ("'/tmp/gradio/3f2a/x.jpg' is not an image").
_QUOTED_PATH_DIRS = re.compile(r"""(?<=['"])(?:[A-Za-z]:)?[\\/](?:[^'"\\/\n]*[\\/])+(?=[^'"\\/\n]*['"])""")


def _hide_paths(message: str) -> str:
    """``message`` with server folders removed from file paths: the file's own name says which upload is meant."""
    # Quoted paths first: they may hold spaces, which end an unquoted path.
    return _SERVER_PATH_DIRS.sub("", _QUOTED_PATH_DIRS.sub("", message))


def _error(message: str) -> gr.Error:
    # Every message reaches a visitor or an API caller, who must not learn the server's folders.
    # print_exception=False: these are the visitor's mistakes, not server faults worth a traceback in the logs.
    return gr.Error(_hide_paths(message), print_exception=False)


def _fit_long_side(width: int, height: int, size: int) -> tuple[int, int]:
    scale = size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize_long_side(image: Image.Image, size: int) -> Image.Image:
    new = _fit_long_side(*image.size, size)
    return image if new == image.size else image.resize(new, Image.LANCZOS)


def _check_number(value: Any, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _error(f"{name} must be a number between {low:g} and {high:g}, got {value!r}") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise _error(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return number


def _parse_weights(weights: Any, count: int) -> list[float]:
    """API weights: a list of numbers, a comma-separated string, or nothing for equal weights."""
    if weights is None or weights == "" or weights == []:
        return [1.0] * count
    if isinstance(weights, str):
        weights = [w for w in weights.replace(";", ",").split(",") if w.strip()]
    if isinstance(weights, (int, float)):
        weights = [weights]
    if not isinstance(weights, (list, tuple)) or len(weights) != count:
        raise _error(f"give one weight per style: got {weights!r} for {count} style(s), e.g. weights=[0.7, 0.3]")
    return [_check_number(w, API_WORDS.weight.format(n=i + 1, i=i), 0, 1e6) for i, w in enumerate(weights)]


def _mask_tensor(mask: Image.Image | str, size: tuple[int, int], what: str, hint: str = UI_WORDS.mask_proportions
                 ) -> torch.Tensor:
    """A painted layer or mask file as an (H, W) tensor in [0, 1] at ``size`` (width, height); ``hint`` says what to
    do about a mask with other proportions."""
    try:
        if isinstance(mask, Image.Image):
            native = mask.size
        else:
            with Image.open(mask) as header:  # only the header: the size check below reads the pixels safely
                native = header.size
        tensor = load_mask(mask, native, what)
    except Image.DecompressionBombError:
        raise _error(f"{what} is too large to open safely; make it the size of the content photo") from None
    except UnidentifiedImageError:  # PIL's own message only names the file
        raise _error(f"{what}: {Path(mask).name!r} is not an image PIL can read; {IMAGE_FORMATS}") from None
    except (ImageLoadError, OSError, ValueError) as err:
        raise _error(f"{what}: {err}") from None
    if abs(native[0] / native[1] - size[0] / size[1]) > 0.02:
        raise _error(f"{what} is {native[0]}x{native[1]} but the content is {size[0]}x{size[1]}: {hint}")
    if (native[1], native[0]) != (size[1], size[0]):
        tensor = F.interpolate(tensor[None, None], size=(size[1], size[0]), mode="bilinear", align_corners=False)[0, 0]
    return tensor.clamp(0, 1)


def _painted_pixels(editor: dict | None) -> np.ndarray | None:
    """Union of the editor's painted layers as an (H, W) bool array (alpha > 0 = painted); None without layers."""
    layers = [layer for layer in (editor or {}).get("layers") or [] if layer is not None]
    painted = None
    for layer in layers:
        image = layer if isinstance(layer, Image.Image) else Image.open(layer)
        alpha = np.asarray(image.convert("RGBA").getchannel("A")) > 0
        painted = alpha if painted is None else painted | alpha
    return painted


def _is_painted(editor: dict | None) -> bool:
    painted = _painted_pixels(editor)
    return painted is not None and bool(painted.any())


def _painted_mask(editor: dict | None, size: tuple[int, int]) -> torch.Tensor | None:
    """The editor's painted region as an (H, W) mask at ``size`` (width, height); None when nothing is painted."""
    painted = _painted_pixels(editor)
    if painted is None or not painted.any():
        return None
    return _mask_tensor(Image.fromarray(painted.astype(np.uint8) * 255), size, "painted region")


def image_upload(label: str, **kwargs: Any) -> gr.Image:
    """A ``gr.Image`` whose unreadable uploads raise the app's clear ``gr.Error``.

    Gradio opens an upload with PIL before any handler runs, so a corrupt file, a non-image or a decompression bomb
    would otherwise surface as PIL's message about a server temp path.
    """
    component = gr.Image(label=label, **kwargs)
    preprocess = component.preprocess

    def checked_preprocess(payload: Any) -> Any:
        try:
            return preprocess(payload)
        except Image.DecompressionBombError:
            raise _error(f"{label}: the image is too large to open safely; downscale it first") from None
        except (OSError, SyntaxError, ValueError) as err:
            raise _error(f"{label}: the file could not be read as an image ({type(err).__name__}); {IMAGE_FORMATS}") from None

    component.preprocess = checked_preprocess
    return component


STOPPED = "Stopped before the refinement finished: nothing was changed. Press Stylize to run it again."


def _session_of(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "local"


class StyleApp:
    """The Space's handlers around one model; plain methods, so tests call them directly.

    Parameters:
        model: a loaded :class:`HybridStyle` (any size; tests use a tiny random one).
        output_dir: where downloadable PNGs are written (default: a fresh temporary folder).
        alternatives: other models a visitor may pick, by name, each built by its function on first use (the served
            model is ``model_choices[0]``).
    """

    def __init__(self, model: HybridStyle, output_dir: str | os.PathLike | None = None,
                 alternatives: dict[str, Callable[[], HybridStyle]] | None = None, model_name: str = "served model"):
        self.model = model.eval()
        self._alternatives = dict(alternatives or {})
        self._loaded: dict[str, HybridStyle] = {}
        self.model_choices = [model_name, *self._alternatives]
        self.output_dir = Path(output_dir or tempfile.mkdtemp(prefix="hybridstyle-app-"))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        # Sessions whose visitor pressed Stop: their refinement ends at its next step (per session, because one
        # visitor's Stop must not end another's run on a shared Space).
        self._stop_requested: set[str] = set()

    # ---- the core, shared by the UI and the API -------------------------------------------------------------------

    def model_for(self, name: str | None) -> HybridStyle:
        """The model a visitor picked (``None`` or the first choice: the served one); others load once, on first use."""
        if name in (None, "", self.model_choices[0]):
            return self.model
        if name not in self._alternatives:
            raise _error(f"model must be one of {', '.join(self.model_choices)}, got {name!r}")
        if name not in self._loaded:
            self._loaded[name] = self._alternatives[name]().eval()
        return self._loaded[name]

    def stylize(
        self,
        content: Image.Image | str | None,
        styles: list[tuple[Image.Image | str, float]],
        alpha: float = 1.0,
        preserve_color: bool = False,
        size: int = SIZE_DEFAULT,
        method: str = "adain",
        style_scale: float = 1.0,
        region: torch.Tensor | Image.Image | str | None = None,
        progress: gr.Progress | None = None,
        wording: Wording = UI_WORDS,
        quality: str = "fast",
        model_name: str | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> tuple[Image.Image, Image.Image, str]:
        """Stylize and return ``(content at output size, result, status text)``; bad input raises ``gr.Error``.

        Parameters:
            content: the photo (path or PIL image).
            styles: ``(image, weight)`` pairs; weights are relative (normalised), 0 leaves a style out.
            alpha: style strength in [0, 1].
            preserve_color: keep the photo's colours.
            size: long side of the result in pixels.
            method: ``"adain"`` or ``"wct"``.
            style_scale: size styles are read at relative to the result; larger = finer strokes.
            region: where the first style paints (white), as a mask at any resolution with the content's proportions;
                the other styles, fused by their weights, paint the rest. With one style the rest is the photo's own
                pixels (the model's one-style mask), feathered by ``REGION_FEATHER``.
            progress: Gradio's progress tracker, if any.
            wording: how error messages name the inputs (``UI_WORDS`` or ``API_WORDS``).
            quality: one of ``QUALITIES``: ``"fast"`` is the feed-forward output; ``"balanced"`` and ``"best"`` refine
                it by optimisation (seconds to a minute on a CPU), reporting each step to ``progress``.
            should_stop: asked after every refinement step; ``True`` ends the run with a ``gr.Error`` saying so, and
                nothing half-refined is returned.
        """
        report = progress or (lambda *args, **kwargs: None)
        started = time.perf_counter()
        if content is None:
            raise _error(wording.no_content)
        if not styles:
            raise _error(wording.no_style)
        alpha = _check_number(alpha, wording.alpha, 0, 1)
        size = int(_check_number(size, wording.size, SIZE_MIN, SIZE_MAX))
        style_scale = _check_number(style_scale, wording.style_scale, 0.25, 4)
        if method not in METHODS:
            raise _error(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if quality not in QUALITIES:
            raise _error(f"quality must be one of {', '.join(QUALITIES)}, got {quality!r}")
        weights = [_check_number(w, wording.weight.format(n=i + 1, i=i), 0, 1e6) for i, (_, w) in enumerate(styles)]

        report(0.05, desc="Reading images")
        try:
            photo = _resize_long_side(load_image(content, wording.content), size)
            images = [load_image(image, wording.style.format(n=i + 1, i=i)) for i, (image, _) in enumerate(styles)]
        except ImageLoadError as err:
            raise _error(str(err)) from None
        if min(photo.size) < 16:
            raise _error(f"the content is {photo.width}x{photo.height} at this output size; use a less elongated photo")

        mask = None
        if region is not None:
            mask = (region if isinstance(region, torch.Tensor)
                    else _mask_tensor(region, photo.size, wording.mask, wording.mask_proportions))
            if mask.shape != (photo.height, photo.width):
                mask = F.interpolate(mask[None, None].float(), size=(photo.height, photo.width), mode="bilinear")[0, 0]
            if float(mask.max()) <= 0:
                raise _error(wording.empty_mask)
            if method != "adain" and len(images) > 1:
                gr.Warning(wording.region_method)
                method = "adain"

        feather = {}
        if mask is not None and len(images) == 1:
            # One style in the region: the model lays the stylized photo over the photo's own pixels through the mask,
            # with a narrow feather. The painted region asks for style 1, whatever its weight slider says.
            style_images, fuse, masks = [images[0]], None, [mask]
            feather = {"mask_blur": max(REGION_FEATHER, 1 / max(photo.size))}
            names = [f"{_title_for(styles[0][0])} in the painted region", "the photo elsewhere"]
        elif mask is None:
            kept = [(image, w) for image, w in zip(images, weights) if w > 0]
            if not kept:
                raise _error(wording.all_weights_zero)
            style_images, fuse = [image for image, _ in kept], [w for _, w in kept]
            masks = None
            total = sum(fuse)
            names = [f"{_title_for(s)} {w / total:.0%}" for (s, _), w in zip(styles, weights) if w > 0]
        else:
            rest = [(image, w) for image, w in zip(images[1:], weights[1:]) if w > 0]
            if not rest:
                raise _error(wording.rest_weights_zero)
            total = sum(w for _, w in rest)
            style_images = [images[0]] + [image for image, _ in rest]
            masks = [mask] + [(1 - mask) * (w / total) for _, w in rest]
            fuse = None
            names = [f"{_title_for(styles[0][0])} in the painted region", "the rest fused from the other styles"]

        report(0.2, desc=f"Stylizing with {len(style_images)} style(s)")

        def step_done(step: int, total: int, _loss: float) -> None:
            if should_stop is not None and should_stop():
                raise KeyboardInterrupt  # refine's way to end early: it then returns nothing
            report(0.2 + 0.75 * step / total, desc=f"Refining: step {step} of {total}")

        release_memory()  # what the last request's pre- and post-processing freed on other threads
        try:
            result = self.model_for(model_name).stylize(
                photo, style_images, weights=fuse, alpha=alpha, preserve_color=bool(preserve_color), masks=masks,
                style_scale=style_scale, method=method, max_size=SIZE_MAX, quality=quality, **feather,
                callback=step_done,
            )
        except (ValueError, ImageLoadError) as err:
            raise _error(str(err)) from None
        except KeyboardInterrupt:
            if should_stop is None or not should_stop():
                raise  # a real Ctrl-C of the server
            raise _error(STOPPED) from None
        finally:
            release_memory()  # the network's working memory, freed by now (see MALLOC_ARENAS)
        report(0.95, desc="Done")
        seconds = time.perf_counter() - started
        settings = f"{method.upper()} · alpha {alpha:g}" + (" · photo colours" if preserve_color else "")
        settings += f" · quality {quality}" if quality != "fast" else ""
        status = f"**{result.width}x{result.height}** in {seconds:.1f} s · {settings} · {', '.join(names)}"
        return photo, result, status

    def save_png(self, image: Image.Image, stem: str = "stylized") -> str:
        """Write ``image`` as a lossless PNG for the download link and return its path (old ones are removed)."""
        now = time.time()
        for old in self.output_dir.glob("*/*.png"):
            try:
                if now - old.stat().st_mtime > OUTPUT_TTL_SECONDS:
                    old.unlink()
                    old.parent.rmdir()
            except OSError:
                pass  # another request removed it first
        folder = self.output_dir / uuid.uuid4().hex
        folder.mkdir()
        path = folder / f"{stem}.png"
        image.save(path, format="PNG")
        return str(path)

    # ---- UI events -------------------------------------------------------------------------------------------------

    def run(
        self,
        content: str | None,
        style1: str | None,
        style2: str | None,
        style3: str | None,
        style4: str | None,
        weight1: float,
        weight2: float,
        weight3: float,
        weight4: float,
        alpha: float,
        preserve_color: bool,
        size: int,
        method: str,
        style_scale: float,
        region_on: bool,
        editor: dict | None,
        quality: str = "fast",
        model_name: str | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio injects progress through this default)
        request: gr.Request | None = None,
    ) -> tuple[tuple[Image.Image, Image.Image], str, str]:
        """The Stylize button: returns (content, result) for the slider, the PNG path and a status line."""
        session = _session_of(request)
        self._stop_requested.discard(session)  # a Stop pressed before this run is not meant for it
        slots = [(s, w) for s, w in zip((style1, style2, style3, style4), (weight1, weight2, weight3, weight4)) if s is not None]
        if content is None:
            raise _error(NO_CONTENT)
        size = int(_check_number(size, "Output size", SIZE_MIN, SIZE_MAX))
        if size > SLOW_SIZE:
            slower = (size / SIZE_DEFAULT) ** 2
            gr.Warning(f"{size} px takes about {slower:.0f}x as long as {SIZE_DEFAULT} px on a CPU; please be patient.")
        # The painting itself decides, as it is when Stylize is pressed: a stroke made just before counts (a checkbox
        # ticked by the editor's input event came seconds late). region_on is the visitor's opt-out, nothing else.
        painted = _is_painted(editor)
        region, photo = None, content
        if region_on and painted:
            if not slots:
                raise _error(NO_STYLE)
            try:
                photo = load_image(content, "content photo")  # decoded once: stylize() takes the image as it is
            except ImageLoadError as err:
                raise _error(str(err)) from None
            region = _painted_mask(editor, _fit_long_side(*photo.size, size))
        try:
            photo, result, status = self.stylize(photo, slots, alpha, preserve_color, size, method, style_scale, region,
                                                 progress, quality=quality, model_name=model_name,
                                                 should_stop=lambda: session in self._stop_requested)
        finally:
            self._stop_requested.discard(session)
        if painted and not region_on:
            status += " · the painted region is not used: tick 'Use the painted region' to use it"
        stem = Path(content).stem if isinstance(content, str) else "photo"
        return (photo, result), self.save_png(result, f"{stem}_stylized"), status

    def run_example(
        self, content: str, style1: str | None, style2: str | None, weight1: float, weight2: float, alpha: float,
        preserve_color: bool, size: int, progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> tuple[tuple[Image.Image, Image.Image], str, str]:
        """A gr.Examples row: content, two styles and their weights, alpha, colours, size (AdaIN, whole image)."""
        return self.run(content, style1, style2, None, None, weight1, weight2, 1.0, 1.0, alpha, preserve_color, size,
                        "adain", 1.0, False, None, progress=progress)

    @staticmethod
    def pick_style(
        style1: str | None, style2: str | None, style3: str | None, style4: str | None, evt: gr.SelectData
    ) -> list[Any]:
        """A gallery click puts that artwork into the first empty style slot."""
        slots = (style1, style2, style3, style4)
        chosen = EXAMPLES["styles"][evt.index].path
        for i, slot in enumerate(slots):
            if slot is None:
                return [gr.skip()] * i + [chosen] + [gr.skip()] * (len(slots) - i - 1)
        gr.Warning(f"All {len(slots)} style slots are full: clear one (the x in its corner) to add another artwork.")
        return [gr.skip()] * len(slots)

    @staticmethod
    def content_to_editor(content: str | None) -> str | None:
        """Show the content photo under the region brush (the new photo starts unpainted)."""
        return content

    @staticmethod
    def check_upload(payload: dict | None, label: str) -> Any:
        """An image slot's upload event: an unreadable file is removed at once, with a warning saying why.

        Runs on the raw upload (``preprocess=False``): the slot's own preprocessing would raise before this could
        clear it, and it only reads the header, so a truncated JPEG would pass until Stylize.
        """
        path = (payload or {}).get("path")
        if not path:
            return gr.skip()
        try:
            load_image(path, label).close()  # decodes every pixel, under the loader's size limit
        except ImageLoadError as err:
            gr.Warning(_hide_paths(f"{err}. It was removed: add another file."))
            return None
        return gr.skip()

    @staticmethod
    def busy() -> tuple[dict, str]:
        """Before a stylization: no second click while it runs, and no status left over from the last run."""
        return gr.update(interactive=False), ""

    def stop(self, request: gr.Request | None = None) -> str:
        """The Stop button: this visitor's refinement ends after its current step; the last result stays shown."""
        self._stop_requested.add(_session_of(request))
        return "Stopping after the current refinement step..."

    @staticmethod
    def idle() -> dict:
        """After a stylization, whether it succeeded or raised: Stylize can be pressed again."""
        return gr.update(interactive=True)

    # ---- the API endpoint ------------------------------------------------------------------------------------------

    def api(
        self,
        content: str | None,
        styles: list[str] | None,
        weights: Any = None,
        alpha: float = 1.0,
        preserve_color: bool = False,
        size: int = SIZE_DEFAULT,
        mask: str | None = None,
        method: str = "adain",
        quality: str = "fast",
        model: str | None = None,
    ) -> Image.Image:
        """``/stylize``: content image file, style image files (fused by weights), settings; returns a PNG.

        ``weights`` is a list (or comma-separated string) with one number per style, default equal. ``mask`` is an
        optional image with the content's proportions: white is where the first style paints, the other styles paint
        the rest (with one style, the rest keeps the photo). ``quality``: ``"fast"`` (default), ``"balanced"`` or
        ``"best"`` (refined by optimisation: slower). ``model``: one of the app's "Model" choices (default the served
        model), e.g. ``"hybridstyle-fast"`` for speed.
        """
        styles = [s for s in (styles or []) if s]
        weighted = list(zip(styles, _parse_weights(weights, len(styles)))) if styles else []
        region = mask if mask else None
        return self.stylize(content, weighted, alpha, preserve_color, size, method, 1.0, region, wording=API_WORDS,
                            quality=quality or "fast", model_name=model or None)[1]


THEME = gr.themes.Soft(
    primary_hue="orange",
    secondary_hue="blue",
    # System fonts: the default Google font would be fetched from the internet on every page view.
    font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "sans-serif"],
    font_mono=["ui-monospace", "Consolas", "monospace"],
)
CSS = """
#style-slots .image-container img { object-fit: contain; }
#status { min-height: 2em; }
/* Style slots: the "Style N" label and the clear button float over the top of the slot, so the thumbnail starts below
   them; an empty slot says what to do in a few words (Gradio's "Drop Image Here - or - Click to Upload" is cut). */
#style-slots .image-frame { padding-top: 36px; box-sizing: border-box; }
#style-slots [id^=style] > button.upload-container { padding-top: 30px; box-sizing: border-box; }
#style-slots [data-testid="upload-text"] { font-size: 0; }
#style-slots [data-testid="upload-text"]::after { content: "Drop an image or click"; font-size: var(--text-md); }
/* Weight sliders: the column is narrower than a block's 160 px minimum, which pushed the handle past the clipped
   right edge; the number box shows the value, so the 0 and 1 end labels go too. */
#style-slots .block { min-width: 0 !important; }
#style-slots .slider_input_container .min_value, #style-slots .slider_input_container .max_value { display: none; }
/* Artworks gallery: every row shown (no scroll box), the label above the thumbnails, and whole captions under the
   pictures (cut captions made both "Van Gogh, ..." the same); two columns on a phone. */
#gallery, #gallery .grid-wrap { height: auto !important; max-height: none !important; overflow: visible !important; }
#gallery > label[data-testid="block-label"] { position: static; margin-bottom: 4px; }
#gallery .grid-container { padding-top: 0; grid-template-rows: none; grid-auto-rows: auto; }
#gallery .thumbnail-item { aspect-ratio: auto; height: auto; display: flex; flex-direction: column; }
#gallery .thumbnail-item > img { height: 100px; flex: none; }
#gallery .caption-label { position: static; max-width: none; white-space: normal; text-overflow: clip; overflow: visible;
  border: 0; border-radius: 0; text-align: center; line-height: 1.25; }
@media (max-width: 640px) { #gallery .grid-container { grid-template-columns: repeat(2, minmax(0, 1fr)); } }
/* A refused input is said once, in the error toast: no red "Error" badge over the result, status and download boxes,
   which the visitor did not touch (Gradio marks every output of a failed event). */
#result [data-testid="status-tracker"]:has(> .error), #status [data-testid="status-tracker"]:has(> .error),
#download [data-testid="status-tracker"]:has(> .error) { display: none; }
"""
# Gradio's page refuses a file that is not an image before it reaches the server, with a toast ("Invalid file type:
# notes.txt. Only image/* allowed.") that names neither the slot nor what to use instead: it is reworded like the
# server's own upload check ("Style 1: 'notes.jpg' is not an image ..."), with the slot that the file was given to.
JS = """
() => {
  let slot = null;
  const remember = (event) => {
    const block = event.target instanceof Element ? event.target.closest(".block[id]") : null;
    const label = block ? block.querySelector('[data-testid="block-label"]') : null;
    slot = label ? label.textContent.trim() : null;
  };
  document.addEventListener("change", remember, true);
  document.addEventListener("drop", remember, true);
  const reword = () => {
    for (const text of document.querySelectorAll('[data-testid="toast-text"]')) {
      const refused = /^Invalid file types?: (.*)\\. Only .* allowed\\.$/.exec(text.textContent.trim());
      if (refused) {
        const names = refused[1].split(", ").map((name) => "'" + name + "'").join(", ");
        text.textContent = (slot ? slot + ": " : "") + names + " is not an image; " + IMAGE_FORMATS + ".";
      }
    }
  };
  new MutationObserver(reword).observe(document.body, {childList: true, subtree: true, characterData: true});
  document.documentElement.dataset.hybridstyle = "ready";  // for tests: the listeners are in place
}
""".replace("IMAGE_FORMATS", json.dumps(IMAGE_FORMATS))

INTRO = """# HybridStyle: paint your photo in the style of artworks
**1.** Add a content photo (upload, paste or webcam). **2.** Click artworks in the gallery or upload your own style
images: they fill the style slots, and their weights fuse them. **3.** Press **Stylize**. Drag the slider on the result
to compare it with the photo; the PNG download is lossless. Optional: paint a region so that style 1 goes only there.
"""


def _when_done(event: Any, fn: Any, outputs: Any) -> None:
    # .success() plus .failure() rather than .then(): Gradio 6.31's page does not start a .then() step after a
    # queued event raises, which left Stylize disabled after every error.
    event.success(fn, None, outputs, api_visibility="private", queue=False)
    event.failure(fn, None, outputs, api_visibility="private", queue=False)


def build_demo(model: HybridStyle, output_dir: str | os.PathLike | None = None,
               alternatives: dict[str, Callable[[], HybridStyle]] | None = None, model_name: str = "served model") -> gr.Blocks:
    """The Space's UI around ``model``; call :func:`launch` (or ``demo.queue().launch()``) to serve it.

    Parameters:
        model: the HybridStyle model used by default.
        output_dir: where downloadable PNGs are written (default: a temporary folder).
        alternatives: other models a visitor may pick in "Model", by name, each built on first use.
        model_name: the name ``model`` is shown under.
    """
    app = StyleApp(model, output_dir, alternatives, model_name)
    style_gallery = [(example.path, example.title) for example in EXAMPLES["styles"]]

    # Gradio keeps every upload and result in its cache folder; without a limit a long-lived Space fills its disk.
    with gr.Blocks(title="HybridStyle: style transfer and style fusion", analytics_enabled=False,
                   delete_cache=(OUTPUT_TTL_SECONDS, OUTPUT_TTL_SECONDS)) as demo:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                content = image_upload(label="1 · Content photo", type="filepath", image_mode=None, height=300,
                                       sources=["upload", "clipboard", "webcam"], elem_id="content")
                gr.Markdown("**2 · Styles**: weights are relative (0.5 + 0.5 = half each); 0 leaves a style out.")
                slots, weights = [], []
                with gr.Row(elem_id="style-slots"):
                    for i in range(MAX_STYLES):
                        with gr.Column(min_width=110):
                            slots.append(image_upload(label=f"Style {i + 1}", type="filepath", image_mode=None, height=160,
                                                      sources=["upload", "clipboard"], elem_id=f"style{i + 1}",
                                                      buttons=[]))  # no fullscreen button over the thumbnail
                            # Unique labels: the examples table keys its columns by label (duplicates break its rendering).
                            weights.append(gr.Slider(0, 1, value=1.0, step=0.05, label=f"Weight {i + 1}",
                                                     elem_id=f"weight{i + 1}"))
                gallery = gr.Gallery(style_gallery, label="Artworks: click one to put it in the first empty slot",
                                     columns=4, height="auto", allow_preview=False, object_fit="cover", elem_id="gallery",
                                     buttons=[])
                with gr.Row():
                    clear_styles = gr.Button("Clear styles", size="sm", variant="secondary")
                with gr.Accordion("3 · Settings", open=True):
                    alpha = gr.Slider(0, 1, value=1.0, step=0.05, label="Style strength (alpha)",
                                      info="0 = the photo, 1 = full style")
                    preserve_color = gr.Checkbox(False, label="Keep the photo's colours")
                    size = gr.Slider(SIZE_MIN, SIZE_MAX, value=SIZE_DEFAULT, step=64, label="Output size (long side, px)",
                                     info=f"above {SLOW_SIZE} px is slow on a CPU Space")
                    with gr.Row():
                        method = gr.Radio(list(METHODS), value="adain", label="Method",
                                          info="AdaIN: fast; WCT: full colour statistics, slower")
                        style_scale = gr.Slider(0.5, 2.0, value=1.0, step=0.25, label="Style scale",
                                                info="larger = finer brush strokes")
                    quality = gr.Radio(list(QUALITIES), value="fast", label="Speed / Quality", elem_id="quality",
                                       info="fast: instant; balanced and best refine the result (about 20 s and a "
                                            "minute at 512 px)")
                    # The default paints; the light model is there for speed (issue 13).
                    model_choice = gr.Radio(app.model_choices, value=app.model_choices[0], label="Model",
                                            elem_id="model", visible=len(app.model_choices) > 1,
                                            info="hybridstyle-base: paints the artwork's strokes, 1-3 s at 512 px; "
                                                 "hybridstyle-fast: about 20x faster, keeps the photo, mostly colour")
                with gr.Accordion("Region styles: paint where style 1 goes", open=False):
                    # Ticked: whatever is painted when Stylize is pressed is used; unticking stylizes the whole photo
                    # and keeps the painting (to compare without repainting).
                    region_on = gr.Checkbox(True, label="Use the painted region",
                                            info="style 1 paints where you paint; the other styles (fused) paint the "
                                                 "rest, or with one style the rest keeps the photo. Untick to stylize "
                                                 "the whole photo and keep the painting")
                    editor = gr.ImageEditor(label="Paint over the photo", type="pil", sources=[], transforms=(),
                                            layers=False, brush=gr.Brush(colors=["#ff40a0"], color_mode="fixed"),
                                            height=360, placeholder="Add a content photo first", elem_id="region")
            with gr.Column(scale=1):
                result = gr.ImageSlider(label="Photo ↔ result (drag to compare)", type="pil", format="png",
                                        interactive=False, max_height=640, elem_id="result")
                # Below the result, not above it: error toasts appear top right and would cover the button.
                with gr.Row():
                    run = gr.Button("Stylize", variant="primary", size="lg", elem_id="run", scale=3)
                    # Ends a refinement ("Speed / Quality" above "fast") after its current step.
                    stop = gr.Button("Stop", variant="stop", size="lg", elem_id="stop", scale=1)
                status = gr.Markdown(elem_id="status")
                download = gr.File(label="Download (lossless PNG)", interactive=False, elem_id="download")

        run_inputs = [content, *slots, *weights, alpha, preserve_color, size, method, style_scale, region_on, editor, quality,
                      model_choice]
        # Stylize is disabled from the click until the run ends, so repeated clicks cannot queue duplicates; the old
        # status goes at once, so a failed run never shows the previous success.
        stylizing = run.click(app.busy, None, [run, status], api_visibility="private", queue=False).then(
            app.run, run_inputs, [result, download, status], api_name="stylize_ui", api_visibility="undocumented",
            concurrency_id="stylize",
        )
        _when_done(stylizing, app.idle, run)
        stop.click(app.stop, None, status, api_visibility="private", queue=False)
        gallery.select(app.pick_style, slots, slots, api_visibility="private", queue=False)
        clear_styles.click(lambda: [None] * MAX_STYLES, None, slots, api_visibility="private", queue=False)
        for upload in (content, *slots):
            # Queued, because the page showed nothing when an unqueued event raised for a bad upload; without a
            # concurrency limit, because a check must not wait behind a stylization.
            upload.upload(partial(app.check_upload, label=upload.label), upload, upload, preprocess=False,
                          api_visibility="private", concurrency_limit=None, show_progress="hidden")
        content.change(app.content_to_editor, content, editor, api_visibility="private", queue=False)

        photos = {Path(e.path).stem: e.path for e in EXAMPLES["content"]}
        arts = {Path(e.path).stem: e.path for e in EXAMPLES["styles"]}
        examples = gr.Examples(
            examples=[
                [photos["gc_animal_kitten"], arts["opencv_starry_night"], None, 1.0, 1.0, 1.0, False, 512],
                [photos["gc_monument_neuschwansteinCastle"], arts["gc_GreatWave"], arts["darknet_scream"], 0.6, 0.4, 1.0, False,
                 512],
                [photos["gc_animal_toucan"], arts["gc_HiroshigeHorsePrawns"], None, 1.0, 1.0, 0.8, True, 512],
                [photos["lomiri_picosdeeuropa"], arts["gc_vangogh_Gogh4"], arts["plasma_safelanding"], 0.5, 0.5, 0.9, False, 512],
            ],
            inputs=[content, slots[0], slots[1], weights[0], weights[1], alpha, preserve_color, size],
            cache_examples=False,
            label="Examples: click a row to run it",
        )
        # Run after the row is loaded, in the Stylize button's concurrency group: gr.Examples' own run_on_click event
        # would get a slot of its own and run beside a Stylize or API request on the same two cores.
        example_run = examples.load_input_event.then(app.busy, None, [run, status], api_visibility="private", queue=False)
        example_run = example_run.then(app.run_example, examples.inputs, [result, download, status],
                                       concurrency_id="stylize", api_visibility="private")
        _when_done(example_run, app.idle, run)
        with gr.Accordion("Credits and licences of the example images", open=False):
            gr.Markdown(credits_markdown())

        # The client API: simple files and numbers instead of the UI's slots (see the module docstring).
        with gr.Row(visible=False):
            api_content = gr.File(label="content", file_types=["image"])
            api_styles = gr.File(label="styles", file_count="multiple", file_types=["image"])
            api_weights = gr.JSON(label="weights")
            api_alpha = gr.Number(1.0, label="alpha")
            api_preserve = gr.Checkbox(False, label="preserve_color")
            api_size = gr.Number(SIZE_DEFAULT, label="size", precision=0)
            api_mask = gr.File(label="mask", file_types=["image"])
            api_method = gr.Textbox("adain", label="method")
            api_quality = gr.Textbox("fast", label="quality")
            api_model = gr.Textbox(app.model_choices[0], label="model")
            api_result = gr.Image(type="pil", format="png", label="result")
            api_button = gr.Button("api")
        api_button.click(
            app.api, [api_content, api_styles, api_weights, api_alpha, api_preserve, api_size, api_mask, api_method,
                      api_quality, api_model],
            api_result, api_name="stylize", concurrency_id="stylize",
            api_description="Stylize a content image with one or more style images (fused by weights); returns a PNG.",
        )
    demo.style_app = app  # for tests and debugging: the handlers behind this UI
    return demo


def launch(demo: gr.Blocks, **kwargs: Any) -> Any:
    """Queue and launch ``demo`` with the Space's settings; keyword arguments override ``Blocks.launch``'s.

    Parameters:
        demo: a Blocks from :func:`build_demo`.
        kwargs: e.g. ``server_name``, ``server_port``, ``prevent_thread_lock`` (the env GRADIO_SERVER_* apply otherwise).
    """
    limit_malloc_arenas()  # before the server's worker threads exist
    # Each stylization already uses every core (torch threads), so running several at once only adds memory.
    concurrency = int(os.environ.get("HYBRIDSTYLE_CONCURRENCY", "1"))
    demo.queue(default_concurrency_limit=concurrency, max_size=int(os.environ.get("HYBRIDSTYLE_QUEUE_SIZE", "64")))
    options = dict(theme=THEME, css=CSS, js=JS, max_file_size=MAX_FILE_SIZE, allowed_paths=[str(EXAMPLES_DIR)], show_error=True)
    options.update(kwargs)
    return demo.launch(**options)


def load_model(name: str | None = None) -> HybridStyle:
    """The model the Space serves: ``name``, else ``$HYBRIDSTYLE_MODEL`` (folder or Hub id), else the bundled default.

    On a GPU if there is one. In ``$HYBRIDSTYLE_DTYPE`` (``auto``, the default: bfloat16 on a CPU that computes it
    natively, about 2x faster there at the same quality, else float32; or ``float32``, ``bfloat16``, ``float16``).

    Parameters:
        name: a model folder or Hub id.
    """
    name = name or os.environ.get("HYBRIDSTYLE_MODEL") or None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dtype = serving_dtype(device, os.environ.get("HYBRIDSTYLE_DTYPE", "auto"))
    except ValueError as err:
        raise SystemExit(f"HYBRIDSTYLE_DTYPE: {err}") from None
    return HybridStyle.from_pretrained(name, torch_dtype=dtype).to(device).eval()


def build_space() -> gr.Blocks:
    """The Space: the served model (``$HYBRIDSTYLE_MODEL`` or the bundled default) and, when that is the bundled
    default, the other bundled models as choices (hybridstyle-fast, for speed; loaded on first use)."""
    name = os.environ.get("HYBRIDSTYLE_MODEL")
    if name:
        return build_demo(load_model(name), model_name=name)
    others = {other: partial(load_model, other) for other in BUNDLED_MODELS if other != DEFAULT_MODEL}
    return build_demo(load_model(), model_name=DEFAULT_MODEL, alternatives=others)


_demo: gr.Blocks | None = None


def __getattr__(name: str) -> Any:
    # `gradio app.py` (reload mode) looks for a module-level `demo`; build it only when asked, so importing this
    # module in tests does not load the real model.
    global _demo
    if name == "demo":
        if _demo is None:
            _demo = build_space()
        return _demo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    limit_malloc_arenas()  # before the model's threads exist too
    launch(build_space())
