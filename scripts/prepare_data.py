#!/usr/bin/env python
"""Rebuild the hybridstyle-base training set from ../shared/data and scikit-image's bundled photos.

    python scripts/prepare_data.py --shared ../shared/data --out data/train

Writes ``content/`` (photos, plus the training artworks: paintings as content teach the decoder to rebuild
painted textures too), ``style/`` (artworks) and ``SOURCES.csv`` (one licence/attribution row per file).
Files listed in ``data/holdout.txt`` are left out for evaluation.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
SKIMAGE_PHOTOS = {
    "astronaut.png": ("Public domain", "NASA (Eileen Collins), via scikit-image"),
    "chelsea.png": ("CC0", "Stefan van der Walt, via scikit-image"),
    "coffee.png": ("CC0", "Rachel Michetti, via scikit-image"),
    "rocket.jpg": ("Public domain", "SpaceX (DSCOVR launch), via scikit-image"),
}


def read_holdout(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"), help="folder with photos/ and artworks/")
    parser.add_argument("--out", default=str(ROOT / "data" / "train"))
    parser.add_argument("--holdout", default=str(ROOT / "data" / "holdout.txt"))
    args = parser.parse_args()
    shared, out = Path(args.shared), Path(args.out)
    holdout = read_holdout(Path(args.holdout))
    for sub in ("content", "style"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for kind, targets in (("photos", ["content"]), ("artworks", ["content", "style"])):
        with open(shared / kind / "SOURCES.csv", newline="", encoding="utf-8") as f:
            for row in tqdm(list(csv.DictReader(f)), desc=kind):
                if f"{kind}/{row['file']}" in holdout:
                    continue
                for target in targets:
                    shutil.copy2(shared / kind / row["file"], out / target / row["file"])
                    rows.append({"split": target, **row})
    try:
        import skimage.data
    except ImportError:
        print("scikit-image not installed: skipping its bundled photos (pip install scikit-image)")
    else:
        folder = Path(skimage.data.__file__).parent
        for name, (licence, author) in SKIMAGE_PHOTOS.items():
            shutil.copy2(folder / name, out / "content" / f"skimage_{name}")
            rows.append(
                {"split": "content", "file": f"skimage_{name}", "package": "scikit-image", "licence": licence, "author": author}
            )
    fields = ["split", "file", "package", "version", "original_path", "licence", "author", "orig_size", "saved_size"]
    with open(out / "SOURCES.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    counts = {s: sum(r["split"] == s for r in rows) for s in ("content", "style")}
    print(f"wrote {out}: {counts['content']} content and {counts['style']} style images, {len(holdout)} held out")


if __name__ == "__main__":
    main()
