"""Write a teacher set: content crops, style crops and the quality dial's refined outputs of each pair, for distillation.

    python scripts/make_teacher_set.py --content_dir data/train/content --style_dir data/train/style \
        --out data/teacher --num_pairs 1000 --quality 8
    # two processes on two cores, each writing every other pair:
    python scripts/make_teacher_set.py ... --shard 0/2 &  python scripts/make_teacher_set.py ... --shard 1/2

The feed-forward model is far from the minimum of its own loss (VGG19 style loss ~0.3 where 8 refinement steps reach
~0.03) and, judged by a network it never trains with, paints less than the refined output does. A refined output is a
label that costs no annotation: ``scripts/train.py --teacher_dir`` then teaches the feed-forward model to produce it
in one pass. Pair ``i`` is drawn from ``--seed`` and ``i`` alone, so shards and resumed runs write the same pairs, and a
pair is complete when its ``.json`` exists (written last, atomically); existing pairs are skipped.

Each pair ``NNNNN`` is ``NNNNN_content.png``, ``NNNNN_style.png`` (the square style crop the teacher read, at the
content's size, as ``stylize`` reads styles), ``NNNNN_target.png`` and ``NNNNN.json`` (the source files, for attribution:
the set is derived from them and keeps their licences).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hybridstyle import HybridStyle  # noqa: E402
from hybridstyle.cli import save_image_atomic  # noqa: E402
from hybridstyle.data import find_images, random_crop  # noqa: E402
from hybridstyle.image_io import load_image  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--content_dir", required=True, help="folder of content photos (searched recursively)")
    p.add_argument("--style_dir", required=True, help="folder of artworks (searched recursively)")
    p.add_argument("--out", required=True, help="folder the pairs are written to")
    p.add_argument("--model", default="hybridstyle-fast", help="bundled model name, folder or Hub id of the teacher's start")
    p.add_argument("--num_pairs", type=int, default=1000, help="pairs in the whole set (over all shards)")
    p.add_argument("--resolution", type=int, default=256, help="side of the square content and style crops")
    p.add_argument("--max_crop_scale", type=float, default=2.0, help="images are scaled by up to this before cropping")
    p.add_argument("--quality", default="8", help="refinement of the targets: a quality name or a number of steps")
    p.add_argument("--seed", type=int, default=0, help="pair i is drawn from (seed, i)")
    p.add_argument("--shard", default="0/1", help="K/N: write the pairs i with i %% N == K (one process per core)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    return p.parse_args(argv)


def pair_choice(seed: int, index: int, num_contents: int, num_styles: int) -> tuple[random.Random, int, int]:
    """The RNG of pair ``index`` and its content and style file indices: a function of (seed, index) only."""
    rng = random.Random(f"{seed}:{index}")
    return rng, rng.randrange(num_contents), rng.randrange(num_styles)


def write_pair(model: HybridStyle, out: Path, index: int, content_file: Path, style_file: Path, rng: random.Random,
               resolution: int, max_crop_scale: float, quality: str | int) -> dict:
    """Crop the content and style of pair ``index``, refine the pair with ``model`` and write its four files."""
    content = random_crop(load_image(content_file, "content"), resolution, max_crop_scale, rng)
    style = random_crop(load_image(style_file, "style"), resolution, max_crop_scale, rng)
    target = model.stylize(content, style, quality=quality)
    stem = f"{index:05d}"
    for name, image in (("content", content), ("style", style), ("target", target)):
        save_image_atomic(image, out / f"{stem}_{name}.png")
    record = {"index": index, "content_source": str(content_file), "style_source": str(style_file),
              "resolution": resolution, "quality": quality, "model": type(model).__name__}
    tmp = out / f"{stem}.json.tmp"
    tmp.write_text(json.dumps(record) + "\n")
    os.replace(tmp, out / f"{stem}.json")
    return record


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        shard, num_shards = (int(x) for x in args.shard.split("/"))
    except ValueError:
        raise SystemExit(f"--shard must be K/N, e.g. 0/2, got {args.shard!r}") from None
    if not 0 <= shard < num_shards:
        raise SystemExit(f"--shard {args.shard}: K must be in [0, N)")
    quality: str | int = int(args.quality) if args.quality.isdigit() else args.quality
    torch.set_num_threads(args.threads)
    contents, styles = find_images(args.content_dir), find_images(args.style_dir)
    if not contents or not styles:
        raise SystemExit(f"no images found in {args.content_dir if not contents else args.style_dir}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(shard, args.num_pairs, num_shards) if not (out / f"{i:05d}.json").is_file()]
    model = HybridStyle.from_pretrained(args.model).float().eval()
    started = time.time()
    for index in tqdm(todo, desc=f"teacher pairs (shard {args.shard})"):
        rng, c, s = pair_choice(args.seed, index, len(contents), len(styles))
        write_pair(model, out, index, contents[c], styles[s], rng, args.resolution, args.max_crop_scale, quality)
    print(f"wrote {len(todo)} pairs to {out} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
