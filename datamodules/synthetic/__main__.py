"""Command line for the synthetic twins: ``python -m datamodules.synthetic faces --out DIR``,
``python -m datamodules.synthetic an8flower --out DIR`` (``datamodules.prepare`` has the same
commands as ``synthetic-<twin>``, for ``make data``)."""

from __future__ import annotations

import argparse
import json


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv`` and write the requested twin; returns the writer's summary."""
    parser = argparse.ArgumentParser(prog="python -m datamodules.synthetic")
    commands = parser.add_subparsers(dest="command", required=True)
    faces = commands.add_parser("faces", help="synthetic CelebA + FFHQ twins (one renderer)")
    faces.add_argument("--out", required=True, help="output folder (celeba/ and ffhq/ inside)")
    faces.add_argument("--preset", default="small", choices=["tiny", "small", "default"])
    faces.add_argument("--seed", type=int, default=0)
    faces.add_argument("--ffhq-size", type=int, default=None, help="FFHQ side (preset default)")
    faces.add_argument("--workers", type=int, default=None, help="processes (preset default)")
    flower = commands.add_parser("an8flower", help="the an8Flower-like twin (VEBI)")
    flower.add_argument("--out", required=True, help="output folder (<variant>/ inside)")
    flower.add_argument("--variant", default="single_6c", choices=["single_6c", "double_12c"])
    flower.add_argument("--per-class", type=int, default=60)
    flower.add_argument("--size", type=int, default=64)
    flower.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "an8flower":
        from datamodules.synthetic.an8flower import make_an8flower

        summary = make_an8flower(args.out, args.variant, args.per_class, args.size, args.seed)
        print(json.dumps(summary, indent=2))
        return summary
    from datamodules.synthetic.faces import write_synthetic_faces

    summary = write_synthetic_faces(
        args.out, preset=args.preset, seed=args.seed, ffhq_size=args.ffhq_size, workers=args.workers
    )
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
