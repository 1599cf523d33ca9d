"""Command line for the synthetic twins: ``python -m datamodules.synthetic faces --out DIR``."""

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
    args = parser.parse_args(argv)
    from datamodules.synthetic.faces import write_synthetic_faces

    summary = write_synthetic_faces(
        args.out, preset=args.preset, seed=args.seed, ffhq_size=args.ffhq_size, workers=args.workers
    )
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
