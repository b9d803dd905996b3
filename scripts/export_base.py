#!/usr/bin/env python
"""Ship a trained model as the package's bundled default (hybridstyle/weights/hybridstyle-base).

    python scripts/export_base.py /path/to/output_dir/checkpoint-N/model

Stores fp16 safetensors (half the size; the VGG19 weights are 8-bit quantized already, so nothing is lost that
matters) and model_card.md as the folder's README.md. ``HybridStyle.from_pretrained()`` loads it as float32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hybridstyle.modeling_hybridstyle import DEFAULT_MODEL_DIR, HybridStyle

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="trained model folder (a checkpoint's model/ or a training --output_dir)")
    parser.add_argument("--out", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--model_card", default=str(ROOT / "model_card.md"))
    args = parser.parse_args()
    model = HybridStyle.from_pretrained(args.model).to(torch.float16)
    card = Path(args.model_card).read_text(encoding="utf-8") if Path(args.model_card).is_file() else None
    model.save_pretrained(args.out, model_card=card)
    size = sum(f.stat().st_size for f in Path(args.out).iterdir()) / 2**20
    print(f"exported {args.model} to {args.out} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()
