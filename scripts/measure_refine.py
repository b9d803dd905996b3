"""Measure the quality dial (``stylize(quality=...)``, ``hybridstyle.refine``): VGG19 loss against seconds.

    python scripts/measure_refine.py                                  # 512 px, two pairs, every section
    python scripts/measure_refine.py --sections levels gatys reach --gatys-seconds 120 --json refine.json

For each content/style pair, at ``--size`` (long side; the style is read at the same long side, as ``stylize`` does):

- ``optimizers``: from the feed-forward output, the same number of steps (one VGG19 forward+backward pass each) of
  each optimiser/parameterisation: L-BFGS on pixels, Adam on pixels, Adam on a Laplacian pyramid (at full size, and
  with ``--optimizer-steps HALF FULL`` at half size too); the curves (seconds, content and style loss per step) go to
  the JSON, the last losses to the table.
- ``levels``: each quality level from the feed-forward output of the model (default hybridstyle-fast), and a
  coarse-to-fine schedule (``COARSE_TO_FINE``), with the full-size losses evaluated along the way (the clock is paused
  while they are, so the seconds are refinement time).
- ``gatys``: Gatys et al. from scratch: the same loss and optimiser from the content image at full size, until the
  objective plateaus (less than 0.5% better over 10 steps) or ``--gatys-seconds``.
- ``reach``: the refinement continued at full size until its style loss is down to Gatys' final one, or Gatys' time
  has passed; the table gives the time each needed for that style loss.

Losses are those the refinement minimises (``hybridstyle.refine``): the content loss against the alpha-blended AdaIN
target at relu4_1 and the style loss (per-channel mean/std plus Gram, relu1_1..relu4_1), both scaled to O(1). Times
are the process's CPU time (``--clock cpu``, default) on one thread (``--threads 1``): on a shared machine wall-clock
time measures the other jobs as much as this one, CPU time hardly so; one thread's CPU seconds are about the wall
seconds of an idle core. Every time is also given relative to one VGG19 forward+backward pass at the content's size,
measured in the same run (``vgg_pass_seconds``), which carries over between machines better than seconds do.
Outputs: the JSON (``--json``), a Markdown table (``--table``; printed too) and the images as PNGs (``--out-dir``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from hybridstyle import HybridStyle, refine  # noqa: E402
from hybridstyle.image_io import load_image, pil_to_tensor, tensor_to_pil  # noqa: E402

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
EXAMPLES = REPO_ROOT / "hybridstyle" / "examples"
DEFAULT_PAIRS = ["gc_animal_kitten.jpg:gc_GreatWave.jpg", "gc_monument_neuschwansteinCastle.jpg:opencv_starry_night.jpg"]
SECTIONS = ("optimizers", "levels", "gatys", "reach")
# (name, optimizer, learning rate) compared in the optimizers section.
OPTIMIZERS = [("lbfgs", "lbfgs", 1.0), ("adam lr 0.02", "adam", 0.02), ("adam lr 0.05", "adam", 0.05),
              ("pyramid adam lr 0.01", "pyramid", 0.01), ("pyramid adam lr 0.02", "pyramid", 0.02)]
# Compared with the levels (which refine at full size only): the same kind of steps, coarse to fine.
COARSE_TO_FINE = ((0.5, 16), (1.0, 8))
PLATEAU_STEPS, PLATEAU_GAIN = 10, 0.005


def _find(name: str, kind: str) -> Path:
    for folder in (SHARED_DATA / kind, EXAMPLES / ("content" if kind == "photos" else "styles")):
        if (folder / name).is_file():
            return folder / name
    path = Path(name)
    if path.is_file():
        return path
    raise SystemExit(f"measure_refine: no {kind} image {name!r} in {SHARED_DATA / kind} or the bundled examples")


# The clock every time is measured with: the process's CPU time by default (see the module docstring), or wall time.
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
now = CLOCKS["cpu"]


class Clock:
    """Seconds that exclude the stretches spent in :meth:`paused` (evaluations the method itself does not need)."""

    def __init__(self) -> None:
        self.started, self.excluded = now(), 0.0

    def __call__(self) -> float:
        return now() - self.started - self.excluded

    @contextmanager
    def paused(self) -> Iterator[None]:
        begin = now()
        try:
            yield
        finally:
            self.excluded += now() - begin


def prepare(model: HybridStyle, content_path: Path, style_path: Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Content at ``size`` (aligned to the model's downsampling) and the style at the same long side, as stylize does."""
    factor = model.downsample_factor
    content = load_image(content_path, "content")
    scale = size / max(content.size)
    work = tuple(max(factor, round(s * scale / factor) * factor) for s in content.size)
    style = load_image(style_path, "style")
    style_scale = max(work) / max(style.size)
    style_size = tuple(max(factor, round(s * style_scale)) for s in style.size)
    as_batch = lambda image: (lambda t: t if t.dim() == 4 else t[None])(pil_to_tensor(image))  # noqa: E731
    return as_batch(content.resize(work, Image.LANCZOS)), as_batch(style.resize(style_size, Image.LANCZOS))


def vgg_pass_seconds(network: torch.nn.Module, shape: torch.Size, repeats: int = 3) -> float:
    """Median seconds of one forward+backward pass of the loss network at ``shape``: this run's unit of work."""
    times = []
    for _ in range(repeats):
        x = torch.rand(shape, requires_grad=True)
        begin = now()
        feats = network(x, refine.STYLE_LAYERS)
        sum(f.square().mean() for f in feats).backward()
        times.append(now() - begin)
    return statistics.median(times)


def evaluate(network: torch.nn.Module, image: torch.Tensor, targets: refine.Targets) -> dict[str, float]:
    with torch.no_grad():
        content, style = refine.losses_of(network, image, targets)
    return {"content": float(content), "style": float(style)}


def run_optimizers(network, ff, content, style, steps: int, scale: float, bar) -> dict:
    """Each optimiser for ``steps`` steps from the feed-forward output at ``scale`` of the size."""
    size = tuple(round(s * scale) for s in content.shape[2:])
    stage_style = refine.resize(style, tuple(round(s * scale) for s in style.shape[2:]))
    targets = refine.build_targets(network, refine.resize(content, size), [stage_style])
    start = refine.resize(ff, size)
    results = {"size": list(size), "steps": steps, "start": evaluate(network, start, targets), "runs": {}}
    for name, kind, lr in OPTIMIZERS:
        run = refine.Optimisation(network, start, targets, kind, lr=lr)
        clock, curve = Clock(), []
        for _ in range(steps):
            run.step()
            content_loss, style_loss = run.last  # of the image before this step
            curve.append({"seconds": clock(), "content": content_loss, "style": style_loss})
            bar.update()
        final = evaluate(network, run.result(), targets)
        results["runs"][name] = {"curve": curve, "final": final, "seconds": curve[-1]["seconds"],
                                 "seconds_per_step": curve[-1]["seconds"] / steps}
    return results


def run_refinement(network, ff, content, style, quality, full_targets, eval_every: int, bar,
                   stop_style: float | None = None, max_seconds: float | None = None) -> tuple[dict, torch.Tensor]:
    """A :class:`refine.Refinement` with the full-size losses along the way (the clock paused while they are taken).

    With ``stop_style``: stops as soon as a full-size step's style loss is at or below it (or after ``max_seconds``).
    """
    with torch.enable_grad():
        plan = refine.Refinement(ff, content, [style], quality=quality, network=network)
        full = tuple(content.shape[2:])
        clock = Clock()
        curve = [{"seconds": 0.0, "step": 0, **evaluate(network, plan.result(), full_targets)}]
        reached = None
        stages_end = {sum(s for _, s, _ in plan.stages[: i + 1]) for i in range(len(plan.stages))}
        for step, _ in enumerate(plan.steps(), start=1):
            seconds = clock()
            bar.update()
            with clock.paused():
                at_full = tuple(plan.size) == full
                if at_full:  # the step's own losses are the full-size ones (of the image before the step)
                    content_loss, style_loss = plan._run.last
                    curve.append({"seconds": seconds, "step": step - 1, "content": content_loss, "style": style_loss,
                                  "before_step": True})
                if step % eval_every == 0 or step in stages_end:
                    curve.append({"seconds": seconds, "step": step, **evaluate(network, plan.result(), full_targets)})
            if stop_style is not None:
                if curve[-1]["style"] <= stop_style:
                    reached = curve[-1]["seconds"]
                    break
                if max_seconds is not None and seconds > max_seconds:
                    break
        result = plan.result()
        final = evaluate(network, result, full_targets)
        record = {"quality": quality if isinstance(quality, str) else [list(q) for q in quality],
                  "steps": step if plan.total else 0, "seconds": clock(), "final": final, "curve": curve}
        if stop_style is not None:
            record.update(target_style=stop_style, reached_seconds=reached)
        return record, result


def run_gatys(network, content, full_targets, max_seconds: float, max_steps: int, bar) -> tuple[dict, torch.Tensor]:
    """Gatys from scratch: the same objective and optimiser, from the content image, at full size."""
    with torch.enable_grad():
        run = refine.Optimisation(network, content, full_targets, "adam")
        clock, curve, objectives = Clock(), [], []
        for step in range(1, max_steps + 1):
            objectives.append(run.step())
            content_loss, style_loss = run.last
            curve.append({"seconds": clock(), "step": step - 1, "content": content_loss, "style": style_loss})
            bar.update()
            old = objectives[-PLATEAU_STEPS - 1] if len(objectives) > PLATEAU_STEPS else None
            if old is not None and objectives[-1] > old * (1 - PLATEAU_GAIN):
                stopped = "plateau"
                break
            if clock() > max_seconds:
                stopped = "time"
                break
        else:
            stopped = "steps"
        result = run.result()
        final = evaluate(network, result, full_targets)
        curve.append({"seconds": clock(), "step": step, **final})
        return {"steps": step, "seconds": clock(), "stopped": stopped, "final": final, "curve": curve}, result


def first_time_at(curve: list[dict], style: float) -> float | None:
    return next((point["seconds"] for point in curve if point["style"] <= style), None)


def table(results: dict) -> str:
    unit = results["vgg_pass_seconds"]
    lines = [f"Clock: {results['clock']} time, {results['threads']} thread(s). VGG19 forward+backward at the content size: "
             f"{unit:.2f} s in this run (the unit of the 'passes' column).",
             "", "| pair | method | seconds | passes | content loss | style loss | reaches Gatys' final style at |",
             "|---|---|---|---|---|---|---|"]
    for pair in results["pairs"]:
        name = pair["name"]
        gatys = pair.get("gatys")
        target = gatys["final"]["style"] if gatys else None
        start = pair["feed_forward"]
        lines.append(f"| {name} | feed-forward ({results['model']}) | {start['seconds']:.2f} | "
                     f"{start['seconds'] / unit:.2f} | {start['content']:.3f} | {start['style']:.3f} | |")
        rows = [(f"quality={level!r} (+ feed-forward)" if level in refine.QUALITY_LEVELS or level.isdigit() else
                 f"coarse to fine, {level} steps@scale (+ feed-forward)", record)
                for level, record in pair.get("levels", {}).items()]
        if pair.get("reach"):
            rows.append(("refined until Gatys' style loss", pair["reach"]))
        if gatys:
            rows.append((f"Gatys from the content ({gatys['steps']} steps, {gatys['stopped']})", gatys))
        for label, record in rows:
            reach = first_time_at(record["curve"], target) if target is not None else None
            if reach is not None and record is not gatys:
                reach += start["seconds"]
            gatys_reach = first_time_at(gatys["curve"], target) if gatys else None
            ratio = f" ({reach / gatys_reach:.2f}x Gatys')" if reach is not None and gatys_reach and record is not gatys else ""
            reach_text = "not reached" if target is not None and reach is None else (f"{reach:.1f} s{ratio}" if reach else "")
            total = record["seconds"] + (0 if record is gatys else start["seconds"])
            lines.append(f"| {name} | {label} | {total:.1f} | {total / unit:.1f} | {record['final']['content']:.3f} | "
                         f"{record['final']['style']:.3f} | {reach_text} |")
        if "optimizers" in pair:
            for section in pair["optimizers"].values():
                lines.append(f"| {name} | optimisers at {section['size'][1]}x{section['size'][0]} ({section['steps']} steps), "
                             f"start style {section['start']['style']:.3f} | | | | | |")
                for opt, run in section["runs"].items():
                    lines.append(f"| {name} | {opt} | {run['seconds']:.1f} | {run['seconds'] / unit:.1f} | "
                                 f"{run['final']['content']:.3f} | {run['final']['style']:.3f} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model name, folder or Hub id (default hybridstyle-fast)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--pairs", nargs="+", default=DEFAULT_PAIRS, metavar="PHOTO:ARTWORK",
                        help="content:style file names in ../shared/data/{photos,artworks} or the bundled examples")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--levels", nargs="+", default=[q for q in refine.QUALITY_LEVELS if q != "fast"])
    parser.add_argument("--optimizer-steps", type=int, nargs=2, default=(0, 24), metavar=("HALF", "FULL"),
                        help="steps per optimiser at half size and at full size (0: not at that size); default 0 24")
    parser.add_argument("--gatys-seconds", type=float, default=300.0)
    parser.add_argument("--gatys-steps", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=4, help="full-size evaluation every N refinement steps")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: with --clock cpu, the seconds are then those of one core)")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="cpu",
                        help="cpu (default): process CPU time, which a shared machine hardly inflates; wall: wall-clock")
    parser.add_argument("--json", default="refine_measurements.json")
    parser.add_argument("--table", default="refine_measurements.md")
    parser.add_argument("--out-dir", default="refine_outputs")
    args = parser.parse_args(argv)
    global now
    now = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = HybridStyle.from_pretrained(args.model).eval()
    network = refine.loss_network()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = [tuple(pair.split(":", 1)) for pair in args.pairs]
    prepared = [prepare(model, _find(c, "photos"), _find(s, "artworks"), args.size) for c, s in pairs]
    results = {"model": args.model or "hybridstyle-fast", "size": args.size, "threads": torch.get_num_threads(),
               "clock": args.clock,
               "quality_levels": {k: [list(s) for s in v] for k, v in refine.QUALITY_LEVELS.items()},
               "content_weight": refine.CONTENT_WEIGHT, "style_weight": refine.STYLE_WEIGHT,
               "learning_rate": refine.LEARNING_RATE,
               "vgg_pass_seconds": vgg_pass_seconds(network, prepared[0][0].shape), "pairs": []}

    half, full = args.optimizer_steps
    level_steps = sum(refine.total_steps(refine.quality_schedule(q)) for q in [*args.levels, COARSE_TO_FINE])
    per_pair = (("optimizers" in args.sections) * len(OPTIMIZERS) * (half + full)
                + ("levels" in args.sections) * level_steps
                + ("gatys" in args.sections) * 100 + ("reach" in args.sections) * 60)
    bar = tqdm(total=per_pair * len(pairs), desc="measuring", unit="step")
    for (content_name, style_name), (content, style) in zip(pairs, prepared):
        name = f"{Path(content_name).stem} / {Path(style_name).stem}"
        stem = f"{Path(content_name).stem}__{Path(style_name).stem}"
        bar.set_description(name)
        timings = []
        with torch.no_grad():
            for _ in range(3):
                begin = now()
                ff = model(content, [style]).images.float().clamp(0, 1)
                timings.append(now() - begin)
        full_targets = refine.build_targets(network, content, [style])
        pair = {"name": name, "content": content_name, "style": style_name, "shape": list(content.shape[2:]),
                "feed_forward": {"seconds": statistics.median(timings), **evaluate(network, ff, full_targets)},
                "content_image": evaluate(network, content, full_targets)}
        tensor_to_pil(ff).save(out_dir / f"{stem}__fast.png")
        if "optimizers" in args.sections:
            pair["optimizers"] = {name: run_optimizers(network, ff, content, style, steps, scale, bar)
                                  for name, steps, scale in (("half", half, 0.5), ("full", full, 1.0)) if steps}
        if "levels" in args.sections:
            pair["levels"] = {}
            for level in [*args.levels, COARSE_TO_FINE]:
                record, image = run_refinement(network, ff, content, style, level, full_targets, args.eval_every, bar)
                label = level if isinstance(level, str) else "+".join(f"{n}@{scale:g}" for scale, n in level)
                pair["levels"][label] = record
                tensor_to_pil(image).save(out_dir / f"{stem}__{label}.png")
        if "gatys" in args.sections:
            pair["gatys"], image = run_gatys(network, content, full_targets, args.gatys_seconds, args.gatys_steps, bar)
            tensor_to_pil(image).save(out_dir / f"{stem}__gatys.png")
            if "reach" in args.sections:
                schedule = [(1.0, args.gatys_steps)]
                pair["reach"], image = run_refinement(
                    network, ff, content, style, schedule, full_targets, args.eval_every, bar,
                    stop_style=pair["gatys"]["final"]["style"], max_seconds=pair["gatys"]["seconds"])
                tensor_to_pil(image).save(out_dir / f"{stem}__reach.png")
        results["pairs"].append(pair)
        Path(args.json).write_text(json.dumps(results, indent=1))  # after every pair: a stopped run keeps its data
    bar.close()
    text = table(results)
    Path(args.table).write_text(text + "\n")
    print(text)
    print(f"wrote {args.json}, {args.table} and the images in {out_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
