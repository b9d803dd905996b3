#!/usr/bin/env python
"""Ship a trained model inside the package, loadable by name offline (``HybridStyle.from_pretrained("<name>")``).

    python scripts/export_model.py runs/fast --name hybridstyle-fast --model_card hybridstyle/weights/hybridstyle-fast/README.md
    python scripts/export_model.py runs/base/checkpoint-4042/model --name hybridstyle-base \
        --model_card hybridstyle/weights/hybridstyle-base/README.md

Stores fp16 safetensors (half the size; from_pretrained loads them as float32) and the model card as the folder's
README.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hybridstyle.modeling_hybridstyle import WEIGHTS_DIR, HybridStyle
from hybridstyle.registry import BUNDLED_MODELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="trained model folder (a training --output_dir or a checkpoint's model/)")
    parser.add_argument("--name", choices=BUNDLED_MODELS, required=True, help="bundled model to (re)place")
    parser.add_argument("--model_card", required=True, help="markdown file stored as the model's README.md")
    args = parser.parse_args()
    model = torch.nn.Module.to(HybridStyle.from_pretrained(args.model), torch.float16)  # no fp32-only modules to keep
    out = WEIGHTS_DIR / args.name
    model.save_pretrained(out, model_card=Path(args.model_card).read_text(encoding="utf-8"))
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"exported {args.model} ({type(model).__name__}) to {out} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()
