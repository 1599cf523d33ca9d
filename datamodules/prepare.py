"""One-time dataset preparation: ``python -m datamodules.prepare <dataset> [options]``.

Commands (``make data DATASET=<name>`` calls this module):

- ``celeba --root R``: read and cross-check every CelebA table, check every image exists, print a
  summary (nothing is written).
- ``ffhq --root R --res 256 [--workers N]``: build the resized cache ``R/cache_256/`` (a no-op when
  it is up to date).
- ``synthetic-faces --out DIR --preset small --seed 0``: write the synthetic CelebA + FFHQ twins to
  ``DIR/celeba`` and ``DIR/ffhq``.
- ``mnist [--root R] [--download]`` and ``synthetic-mnist --out DIR``: MNIST's IDX files.
- ``cub [--root R] [--download]``: verify CUB-200-2011's tables and images, write its
  wsolevaluation metadata when absent, and verify the metadata with the DataModule's check.
- ``synthetic-birds --out DIR [--classes 20 --per-class 30 5 15 --size 300 500 --variant V]``:
  write the synthetic birds in the CUB and metadata layouts.
- ``viton [--root R] [--size H W] [--drop-invalid]``: check every VITON pair (CP-VTON or VITON-HD
  layout) and write the duplicate-cleaned ``clean_{train,test}_pairs.txt`` and
  ``clean_report.json`` beside the originals, logging the counts beside the paper's 7,240.
- ``synthetic-viton --out DIR [--preset tiny|small|default] [--seed 0]``: write the VITON twin
  (CP-VTON layout, cross pairs, planted duplicates) to ``DIR`` and clean it.
- ``synthetic-exemplar-faces --out DIR [--preset tiny|small] [--seed 0]``: write the exemplar
  twin of face hallucination (CelebA layout, fine identity detail, region sidecar) to ``DIR``.
- ``synthetic-an8flower --out DIR [--variant single_6c|double_12c|both] [--per-class 60]
  [--size 64] [--seed 0]``: write the an8Flower-like twin of VEBI (images, part masks, class
  table, 5 stratified folds) to ``DIR/<variant>``.

To add a dataset, write ``_add_<name>(parser)`` and ``_run_<name>(args)`` and add one line to
``COMMANDS``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from datamodules.paths import resolve_root


def _add_celeba(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root", default=None, help="CelebA root (default: $LATENTLAB_DATA/celeba)"
    )


def _run_celeba(args: argparse.Namespace) -> None:
    from datamodules.celeba import check_image_files
    from datamodules.formats.celeba import ATTRIBUTE_NAMES, read_celeba

    root = resolve_root(args.root, "celeba")
    index = read_celeba(root)
    check_image_files(index)
    splits = {name: int((index.partition == code).sum()) for code, name in enumerate(_SPLITS)}
    print(f"CelebA at {root}: {len(index.names)} images, all present and not empty")
    print(f"  identities: {index.identity.unique().numel()}")
    print("  official partition: " + ", ".join(f"{k} {v}" for k, v in splits.items()))
    rates = index.attributes.float().mean(0).tolist()
    print("  positive rate per attribute:")
    for name, rate in zip(ATTRIBUTE_NAMES, rates, strict=True):
        print(f"    {name:<20s} {rate:.3f}")


def _add_ffhq(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=None, help="FFHQ root (default: $LATENTLAB_DATA/ffhq)")
    parser.add_argument("--res", type=int, required=True, help="side of the cached images")
    parser.add_argument("--out", default=None, help="cache folder (default: ROOT/cache_RES)")
    parser.add_argument("--workers", type=int, default=0, help="decoding processes (0: serial)")


def _run_ffhq(args: argparse.Namespace) -> None:
    from datamodules.formats.ffhq import build_resized_cache, read_cache_manifest

    root = resolve_root(args.root, "ffhq")
    out = build_resized_cache(root, args.res, out=args.out, workers=args.workers)
    manifest = read_cache_manifest(out)
    print(f"FFHQ cache {out}: {manifest['count']} images at {manifest['res']} px, up to date")


def _add_synthetic_faces(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="writes OUT/celeba and OUT/ffhq")
    parser.add_argument("--preset", default="small", choices=["tiny", "small", "default"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ffhq-size", type=int, default=None, help="FFHQ side (preset's default)")
    parser.add_argument("--workers", type=int, default=None, help="rendering processes")


def _run_synthetic_faces(args: argparse.Namespace) -> None:
    from datamodules.synthetic.faces import write_synthetic_faces

    out = Path(args.out)
    options = {"ffhq_size": args.ffhq_size, "workers": args.workers}
    options = {k: v for k, v in options.items() if v is not None}
    write_synthetic_faces(out, preset=args.preset, seed=args.seed, **options)
    print(
        f"synthetic faces ({args.preset}, seed {args.seed}) written to {out}/celeba and {out}/ffhq"
    )


def _add_mnist(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=None, help="MNIST root (default: $LATENTLAB_DATA/mnist)")
    parser.add_argument("--download", action="store_true", help="fetch missing files (internet)")


def _run_mnist(args: argparse.Namespace) -> None:
    from datamodules.formats.mnist import prepare_mnist

    for name, path in prepare_mnist(args.root, download=args.download).items():
        print(f"MNIST {name}: {path} (MD5 verified)")


def _add_synthetic_mnist(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for the twin's four IDX files")


def _run_synthetic_mnist(args: argparse.Namespace) -> None:
    from datamodules.synthetic.mnist import write_synthetic_mnist

    print(f"synthetic MNIST (sklearn digits in IDX) written to {write_synthetic_mnist(args.out)}")


def _add_cub(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=None, help="CUB root (default: $LATENTLAB_DATA/cub)")
    parser.add_argument("--download", action="store_true", help="fetch CUB_200_2011.tgz (md5)")


def _run_cub(args: argparse.Namespace) -> None:
    from datamodules.cub import CUBV2_HINT, prepare_cub

    root = prepare_cub(args.root, download=args.download)
    metadata = root / "metadata" / "CUB"
    splits = "train, test and val" if (metadata / "val").exists() else "train and test"
    print(f"CUB-200-2011 at {root}: the five tables and their images verified;")
    print(f"  {metadata} ({splits}, what training reads) verified, agrees with the tables")
    if not (metadata / "val").exists():
        print(f"  no val split: {CUBV2_HINT}")


def _add_synthetic_birds(parser: argparse.ArgumentParser) -> None:
    from datamodules.synthetic.birds import VARIANTS

    parser.add_argument("--out", required=True, help="writes the CUB and metadata layouts to OUT")
    parser.add_argument("--classes", type=int, default=20, help="bird classes (20 or more)")
    parser.add_argument(
        "--per-class",
        type=int,
        nargs=3,
        default=(30, 5, 15),
        metavar=("TRAIN", "VAL", "TEST"),
        help="images per class and split",
    )
    parser.add_argument(
        "--size", type=int, nargs=2, default=(300, 500), metavar=("MIN", "MAX"), help="sides (px)"
    )
    parser.add_argument("--variant", default="default", choices=sorted(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)


def _run_synthetic_birds(args: argparse.Namespace) -> None:
    from datamodules.synthetic.birds import make_synthetic_cub

    root = make_synthetic_cub(
        args.out,
        num_classes=args.classes,
        per_class=tuple(args.per_class),
        size_range=tuple(args.size),
        seed=args.seed,
        variant=args.variant,
    )
    train, val, test = (args.classes * n for n in args.per_class)
    print(
        f"synthetic birds ({args.variant}, seed {args.seed}): {args.classes} classes, "
        f"{train} train / {val} val / {test} test images in {root} "
        "(CUB_200_2011/, CUBV2/, metadata/CUB/, factors.csv)"
    )


def _add_viton(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=None, help="VITON root (default: $LATENTLAB_DATA/viton)")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="image size every file must have (default: the twin's, else the layout's)",
    )
    parser.add_argument(
        "--drop-invalid", action="store_true", help="leave out (and report) pairs failing a check"
    )


def _run_viton(args: argparse.Namespace) -> None:
    from datamodules.viton_cleaning import REPORT_FILE, clean_viton

    root = resolve_root(args.root, "viton")
    report = clean_viton(root, size=args.size, drop_invalid=args.drop_invalid)
    print(f"VITON at {root}: every pair checked; duplicate items removed")
    print("\n".join(report.summary()))
    print(f"  written: clean_train_pairs.txt, clean_test_pairs.txt, {REPORT_FILE}")


def _add_synthetic_viton(parser: argparse.ArgumentParser) -> None:
    from datamodules.synthetic.viton import PRESETS

    parser.add_argument("--out", required=True, help="the twin's root")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)


def _run_synthetic_viton(args: argparse.Namespace) -> None:
    from datamodules.synthetic.viton import PRESETS, make_viton_synth
    from datamodules.viton_cleaning import clean_viton

    sizes = PRESETS[args.preset]
    summary = make_viton_synth(
        args.out,
        sizes["n_train"],
        sizes["n_test"],
        sizes["height"],
        sizes["width"],
        seed=args.seed,
        progress=True,
    )
    report = clean_viton(args.out, size=(sizes["height"], sizes["width"]), progress=False)
    print(
        f"synthetic VITON ({args.preset}, seed {args.seed}): {summary['train']} train / "
        f"{summary['test']} test pairs at {sizes['height']}x{sizes['width']} in {args.out} "
        f"({summary['duplicates']} planted duplicates, {summary['cross_pairs']} cross pairs, "
        f"{summary['seconds']} s); cleaned:"
    )
    print("\n".join(report.summary()))


def _add_synthetic_exemplar_faces(parser: argparse.ArgumentParser) -> None:
    from datamodules.synthetic.exemplar_faces import PRESETS

    parser.add_argument("--out", required=True, help="the twin's root (CelebA layout)")
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)


def _run_synthetic_exemplar_faces(args: argparse.Namespace) -> None:
    from datamodules.synthetic.exemplar_faces import make_exemplar_faces

    summary = make_exemplar_faces(args.out, preset=args.preset, seed=args.seed)
    print(
        f"exemplar faces ({args.preset}, seed {args.seed}): {summary['images']} images of "
        f"{summary['identities']} identities in {args.out} ({summary['seconds']} s)"
    )


def _add_synthetic_an8flower(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="writes OUT/single_6c and/or OUT/double_12c")
    parser.add_argument("--variant", default="both", choices=["single_6c", "double_12c", "both"])
    parser.add_argument(
        "--per-class", type=int, default=60, help="images per class (CPU tier 60, GPU tier 300)"
    )
    parser.add_argument("--size", type=int, default=64, help="image side (64; GPU tier 128)")
    parser.add_argument("--seed", type=int, default=0)


def _run_synthetic_an8flower(args: argparse.Namespace) -> None:
    from datamodules.synthetic.an8flower import VARIANTS, make_an8flower

    for variant in VARIANTS if args.variant == "both" else (args.variant,):
        summary = make_an8flower(
            args.out, variant, args.per_class, args.size, args.seed, progress=True
        )
        print(
            f"an8Flower-like {variant} (seed {args.seed}): {summary['images']} images of "
            f"{summary['classes']} classes at {args.size} px in {summary['root']} "
            f"({summary['seconds']} s)"
        )


_SPLITS = ("train", "val", "test")
Command = tuple[
    str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None]
]
COMMANDS: dict[str, Command] = {
    "celeba": ("verify CelebA and print a summary", _add_celeba, _run_celeba),
    "ffhq": ("build FFHQ's resized cache", _add_ffhq, _run_ffhq),
    "synthetic-faces": (
        "write the synthetic CelebA/FFHQ twins",
        _add_synthetic_faces,
        _run_synthetic_faces,
    ),
    "mnist": ("verify (or --download) MNIST's IDX files", _add_mnist, _run_mnist),
    "synthetic-mnist": ("write the MNIST twin", _add_synthetic_mnist, _run_synthetic_mnist),
    "cub": ("verify (or --download) CUB-200-2011, write its metadata", _add_cub, _run_cub),
    "synthetic-birds": (
        "write the synthetic birds (CUB twin)",
        _add_synthetic_birds,
        _run_synthetic_birds,
    ),
    "viton": ("check VITON and write its duplicate-cleaned pair lists", _add_viton, _run_viton),
    "synthetic-viton": (
        "write (and clean) the VITON twin",
        _add_synthetic_viton,
        _run_synthetic_viton,
    ),
    "synthetic-exemplar-faces": (
        "write the exemplar-faces twin (face hallucination)",
        _add_synthetic_exemplar_faces,
        _run_synthetic_exemplar_faces,
    ),
    "synthetic-an8flower": (
        "write the an8Flower-like twin (VEBI)",
        _add_synthetic_an8flower,
        _run_synthetic_an8flower,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per entry of ``COMMANDS``."""
    parser = argparse.ArgumentParser(prog="python -m datamodules.prepare", description=__doc__)
    commands = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text)
        add_arguments(sub)
        sub.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` and run the chosen command."""
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
