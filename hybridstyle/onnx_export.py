"""ONNX export of any HybridStyle model, and a small onnxruntime runner for the exported file.

    from hybridstyle import HybridStyle
    from hybridstyle.onnx_export import OnnxStylizer, export_onnx

    export_onnx(HybridStyle.from_pretrained(), "hybridstyle.onnx")       # checked against PyTorch before it is written
    OnnxStylizer("hybridstyle.onnx").stylize("photo.jpg", "wave.jpg").save("out.png")

The ONNX graph is ``forward(content, style)`` with the defaults (one style, ``alpha=1``, AdaIN), clipped to [0, 1]:

- ``content``: float32 ``(1, 3, H, W)``, RGB in [0, 1]; H and W are dynamic but must be multiples of the model's
  ``downsample_factor`` (8 for hybridstyle-base, 16 for hybridstyle-fast; stored in the file's metadata);
- ``style``: float32 ``(1, 3, H', W')``, RGB in [0, 1], any size (each side at least the downsample factor);
- ``image``: float32 ``(1, 3, H, W)``, RGB in [0, 1].

:class:`OnnxStylizer` does the resizing that ``HybridStyle.stylize`` does (content to multiples of the factor and back,
style to the content's long side), so its PIL output matches ``stylize(content, style)``.

Export uses torch's ``torch.export``-based exporter (``dynamo=True``, the default since torch 2.9; the TorchScript
exporter is deprecated and needs the ``onnx`` package all the same). It needs the ``[onnx]`` extra:
``pip install 'hybridstyle[onnx]'``. Running an exported file needs only ``onnxruntime`` (and numpy, PIL).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import logging
import os
import secrets
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .image_io import ImageInput, load_image

if TYPE_CHECKING:
    import torch

    from .modeling_hybridstyle import HybridStyle

# torch 2.13's default. The exporter translates to opset 18 and up; opset 20 needs onnxruntime 1.17 or later.
DEFAULT_OPSET = 20
MIN_OPSET, MAX_OPSET = 18, 23
# Largest |ONNX - PyTorch| accepted on [0, 1] outputs: a quarter of one 8-bit level (1/255). float32 graphs differ
# from PyTorch only by summation order, about 1e-6 (see tests/test_onnx_export.py).
PARITY_TOLERANCE = 1e-3
INPUT_NAMES, OUTPUT_NAME = ("content", "style"), "image"
# Keys of the file's metadata_props; OnnxStylizer needs the downsample factor to size its inputs.
META_FACTOR, META_CLASS, META_CONFIG = "hybridstyle.downsample_factor", "hybridstyle.model_class", "hybridstyle.config"
# stylize_images.MIN_SIDE, repeated so that OnnxStylizer needs no torch (tests check they agree).
MIN_SIDE = 16


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote.

    Parameters:
        path: the ONNX file.
        opset: its ONNX opset.
        downsample_factor: content sides must be multiples of this.
        max_abs_diff: largest |onnxruntime - PyTorch| over the check sizes (``None`` if not checked).
        checked_sizes: the ``(content HxW, style HxW)`` pairs of the check, none of them the export's sample size.
    """

    path: Path
    opset: int
    downsample_factor: int
    max_abs_diff: float | None
    checked_sizes: list[tuple[tuple[int, int], tuple[int, int]]]


def check_export(path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Check everything an export needs except the model: a ``.onnx`` path in a folder we can write (created if
    missing), a supported opset and the exporter's packages. Returns the path.

    Cheap: call it before loading a model, so a typo fails in a second rather than after the export. Raises
    ``ValueError`` (or ``ImportError``) saying what to do.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"the output {str(path)!r} must be a file name ending in .onnx, e.g. hybridstyle.onnx")
    if path.is_dir():
        raise ValueError(f"the output {str(path)!r} is a folder; pass a file name inside it, e.g. {str(path / 'model.onnx')!r}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}; the default {DEFAULT_OPSET} "
                         "runs on onnxruntime 1.17 and later (higher opsets need a newer one)")
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"ONNX export needs {' and '.join(missing)}: pip install 'hybridstyle[onnx]'")
    ensure_writable_folder(path.parent)
    return path


def ensure_writable_folder(folder: Path) -> None:
    """Create ``folder`` if needed and prove it writable by creating a file in it (``os.access`` lies for root and
    read-only mounts). Raises ``ValueError`` saying which folder and why."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ValueError(f"{str(folder)!r} is a file, not a folder; choose another output location") from None
    except OSError as err:
        raise ValueError(f"cannot create the folder {str(folder)!r} ({err.strerror}); choose another output location") from None
    probe = folder / f".hybridstyle-write-test-{secrets.token_hex(4)}"
    try:
        probe.open("xb").close()
    except OSError as err:
        raise ValueError(f"cannot write to the folder {str(folder)!r} ({err.strerror}); choose another output location") from None
    probe.unlink()


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("running an ONNX file needs onnxruntime: pip install 'hybridstyle[onnx]' (or onnxruntime)") from None
    return onnxruntime


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's internal chatter (torchvision-op registration notes, torch-internal deprecations); a
    user exporting a style model can act on none of it. Real failures still raise."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def _graph_module(model: HybridStyle) -> torch.nn.Module:
    """The module whose forward becomes the ONNX graph: the model's own forward with its defaults, clipped to [0, 1]
    so the output is an image, like what ``stylize`` returns."""
    import torch

    class StylizeGraph(torch.nn.Module):
        def __init__(self, inner: HybridStyle):
            super().__init__()
            self.inner = inner

        def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
            return self.inner(content, style, return_dict=False)[0].clamp(0.0, 1.0)

    graph = StylizeGraph(model)
    graph.training = model.training  # the wrapper's own flag only; .train() would also reset the model's submodules
    return graph


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode for the duration (the exporter warns otherwise), then the caller's mode back."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def export_onnx(model: HybridStyle, path: str | os.PathLike, opset: int = DEFAULT_OPSET, verify: bool = True) -> OnnxExport:
    """Write ``model`` (any HybridStyle family member) as an ONNX file with dynamic content and style sizes.

    The export runs on a float32 CPU copy if the model is elsewhere; ``model`` itself is not changed. The file is
    written to a temporary name and renamed when complete (and, with ``verify``, checked), so ``path`` never holds a
    partial or unchecked export.

    Parameters:
        model: a ``HybridStyle`` or ``HybridStyleFast``.
        path: the ``.onnx`` file to write; its folder is created.
        opset: ONNX opset, 18 to 23.
        verify: run the file with onnxruntime at two sizes other than the export's and compare with PyTorch; raise
            ``ValueError`` (and write nothing) if they differ by more than ``PARITY_TOLERANCE``.
    """
    import torch
    from torch.export import Dim

    path = check_export(path, opset)
    if model.device.type != "cpu" or model.dtype != torch.float32:
        # nn.Module.to, not ModelMixin.to: diffusers' version warns about dtypes in ways that do not apply here.
        model = torch.nn.Module.to(copy.deepcopy(model), "cpu", torch.float32)
    factor = int(model.downsample_factor)
    # Sample sizes all different: torch.export gives equal sample sizes one symbol ("duck sizing"), which would tie
    # the height to the width. Content sides are declared as factor * n, which is what the model accepts.
    content = torch.rand(1, 3, 4 * factor, 6 * factor, generator=torch.Generator().manual_seed(0))
    style = torch.rand(1, 3, 5 * factor, 7 * factor, generator=torch.Generator().manual_seed(1))
    dynamic_shapes = {
        "content": {2: factor * Dim("content_height_blocks", min=1), 3: factor * Dim("content_width_blocks", min=1)},
        "style": {2: Dim("style_height", min=factor), 3: Dim("style_width", min=factor)},
    }
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        with _quiet_exporter(), _eval_mode(model), torch.no_grad():
            program = torch.onnx.export(
                _graph_module(model), (content, style), dynamo=True, dynamic_shapes=dynamic_shapes, opset_version=opset,
                input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME], verbose=False,
            )
        program.model.metadata_props.update({
            META_FACTOR: str(factor),
            META_CLASS: type(model).__name__,
            META_CONFIG: json.dumps({k: v for k, v in model.config.items() if not k.startswith("_")}),
        })
        # One self-contained file: the models are far below protobuf's 2 GB limit.
        program.save(tmp, external_data=False)
        max_diff, sizes = None, []
        if verify:
            # Neither the export's sample sizes nor multiples of anything for the styles: a size baked into the graph
            # would show as a shape error or a wrong value.
            sizes = [((3 * factor, 5 * factor), (6 * factor + 3, 4 * factor + 1)),
                     ((7 * factor, 3 * factor), (3 * factor + 5, 8 * factor - 1))]
            max_diff = max_abs_diff(model, tmp, sizes)
            if not max_diff <= PARITY_TOLERANCE:  # also catches NaN
                raise ValueError(f"the exported graph disagrees with PyTorch (max |difference| {max_diff:.3g} > "
                                 f"{PARITY_TOLERANCE}); nothing was written. Please report this with the model's config")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return OnnxExport(path=path, opset=opset, downsample_factor=factor, max_abs_diff=max_diff, checked_sizes=sizes)


def max_abs_diff(model: HybridStyle, path: str | os.PathLike,
                 sizes: Sequence[tuple[tuple[int, int], tuple[int, int]]]) -> float:
    """Largest |onnxruntime - PyTorch| between the ONNX file at ``path`` and ``model``'s forward (defaults, clipped to
    [0, 1]) on seeded random inputs of the given sizes.

    Parameters:
        model: the HybridStyle model the file was exported from (float32, CPU).
        sizes: ``((content_h, content_w), (style_h, style_w))`` pairs; content sides multiples of the factor.
    """
    import torch

    runner = OnnxStylizer(path)
    graph = _graph_module(model)
    generator = torch.Generator().manual_seed(2)
    worst = 0.0
    for content_hw, style_hw in sizes:
        content = torch.rand(1, 3, *content_hw, generator=generator)
        style = torch.rand(1, 3, *style_hw, generator=generator)
        with _eval_mode(model), torch.no_grad():
            expected = graph(content, style).numpy()
        got = runner.run(content.numpy(), style.numpy())
        if got.shape != expected.shape:
            raise ValueError(f"the ONNX output is {got.shape} but PyTorch's is {expected.shape} for content {content_hw}")
        diff = float(np.abs(got - expected).max())
        if not np.isfinite(diff):  # NaN would otherwise lose every comparison and pass as "no difference"
            return float("inf")
        worst = max(worst, diff)
    return worst


class OnnxStylizer:
    """Run an exported hybridstyle ONNX file with onnxruntime: arrays in :meth:`run`, PIL images in :meth:`stylize`.

    Parameters:
        path: a file written by :func:`export_onnx` (``hybridstyle export-onnx``).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice, one per physical core).
        providers: onnxruntime execution providers (default ``["CPUExecutionProvider"]``).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, providers: Sequence[str] | None = None):
        ort = _import_onnxruntime()
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX file at {str(self.path)!r}; write one with: hybridstyle export-onnx {self.path}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as err:  # onnxruntime raises its own pybind error types (InvalidProtobuf, Fail, ...)
            raise ValueError(f"{str(self.path)!r} is not an ONNX model onnxruntime can load ({err}); re-export it with "
                             "hybridstyle export-onnx") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        names = tuple(i.name for i in self.session.get_inputs())
        if META_FACTOR not in metadata or names != INPUT_NAMES:
            raise ValueError(f"{str(self.path)!r} was not written by hybridstyle export-onnx (inputs {names}, no "
                             f"{META_FACTOR} metadata); re-export it with hybridstyle export-onnx")
        self.downsample_factor = int(metadata[META_FACTOR])
        self.model_class = metadata.get(META_CLASS, "")

    def run(self, content: np.ndarray, style: np.ndarray) -> np.ndarray:
        """The graph on float32 arrays ``(1, 3, H, W)`` and ``(1, 3, H', W')`` in [0, 1]; returns ``(1, 3, H, W)``."""
        factor = self.downsample_factor
        if content.ndim != 4 or content.shape[:2] != (1, 3) or content.shape[2] % factor or content.shape[3] % factor:
            raise ValueError(f"content must be (1, 3, H, W) with H and W multiples of {factor}, got {content.shape}")
        if style.ndim != 4 or style.shape[:2] != (1, 3):
            raise ValueError(f"style must be (1, 3, H, W), got {style.shape}")
        feeds = {"content": np.ascontiguousarray(content, np.float32), "style": np.ascontiguousarray(style, np.float32)}
        return self.session.run([OUTPUT_NAME], feeds)[0]

    def stylize(self, content: ImageInput, style: ImageInput, style_scale: float = 1.0, max_size: int = 2048) -> Image.Image:
        """Paint ``content`` in ``style``; a PIL image of the content's size, as ``HybridStyle.stylize(content, style,
        style_scale=..., max_size=...)`` gives (up to one 8-bit level)."""
        content_image = load_image(content, "content")
        width, height = content_image.size
        if max(width, height) > max_size:
            raise ValueError(f"content is {width}x{height}, over max_size={max_size}; downscale it or pass "
                             f"max_size={max(width, height)}")
        if min(width, height) < MIN_SIDE:
            raise ValueError(f"content is {width}x{height}; each side needs at least {MIN_SIDE} pixels")
        if not style_scale > 0:
            raise ValueError(f"style_scale must be > 0 (1 = read the style at the content's size), got {style_scale}")
        # The same working sizes as HybridStyle.stylize: content to the nearest multiples of the factor, style with its
        # long side at the content's (times style_scale), at least 64 px.
        factor = self.downsample_factor
        work_w, work_h = (max(2 * factor, round(s / factor) * factor) for s in (width, height))
        style_image = load_image(style, "style 1")
        long_side = min(max_size, max(64, round(max(work_w, work_h) * style_scale)))
        scale = long_side / max(style_image.size)
        style_size = tuple(max(1, round(s * scale)) for s in style_image.size)
        style_array = _to_array(style_image.resize(style_size, Image.LANCZOS))
        for axis in (2, 3):  # a thin strip of a style is mirrored onto itself up to the minimum side, as in stylize
            while style_array.shape[axis] < 2 * factor:
                style_array = np.concatenate([style_array, np.flip(style_array, axis)], axis)
            style_array = style_array[:, :, : max(2 * factor, style_size[1]), : max(2 * factor, style_size[0])]
        out = self.run(_to_array(content_image.resize((work_w, work_h), Image.LANCZOS)), np.ascontiguousarray(style_array))
        result = Image.fromarray((np.clip(out[0], 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0))
        return result if result.size == (width, height) else result.resize((width, height), Image.LANCZOS)


def _to_array(image: Image.Image) -> np.ndarray:
    return (np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).transpose(2, 0, 1)[None].copy()
