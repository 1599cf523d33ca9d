"""Every GPU measurement of the suite in one call, written as one table (``make bench-gpu``).

A lent GPU comes for minutes, so this runs everything in one go, within ``--budget`` seconds:

- per method, training images/s in fp32 (``32-true``) and in ``bf16-mixed`` with data loading
  included (OLR's Siamese: both images of each occluded pair), and their ratio, measured in the
  same run on the same data. Each method is built from its own experiment YAML through the
  suite's CLI (so the numbers are those of the configs users run), with overrides that bring it
  to the paper's scale (backbone, image size) on a synthetic twin written to a temporary folder;
- the metric benchmarks on CUDA (``METRIC_BENCHMARKS``): FID of 10,000 images at 299 px against
  cached statistics vs torchmetrics' default path (``bench_fid``), the WSOL metrics
  (``bench_maxboxacc``) and the Frechet step (``bench_frechet``).

Writes ``<out>/gpu_bench.md`` (the table, the device name, the command) and prints it. Without
CUDA it says so and exits 0, unless ``--cpu`` runs the same on the CPU at a tiny scale (how it is
tested).

Run: ``python -m benchmarks.gpu --out runs/bench_gpu`` (``make bench-gpu``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks.throughput import training_rate

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = ("32-true", "bf16-mixed")
#: LPIPS-VGG with a random trunk: the same cost as ImageNet's, and no weights file to fetch
RANDOM_LPIPS_TRUNK = [
    "--model.init_args.perceptual_weights=null",
    "--model.init_args.random_trunks=true",
]


@dataclass(frozen=True)
class Method:
    """One method's training benchmark: an experiment YAML and the overrides of each scale."""

    name: str
    experiment: str
    #: its synthetic twin's data root: faces, olr_faces, aae_faces, exemplar_faces, viton, birds
    #: or mnist
    twin: str
    gpu: list[str] = field(default_factory=list)
    cpu: list[str] = field(default_factory=list)
    images_per_item: int = 1  # images in one batch item (2 for OLR's occluded pairs)
    #: Why the one-batch fp16 update check (tests/test_mixed_precision.py) cannot judge this
    #: method; None: it can.
    no_fp16_update_check: str | None = None


METHODS = (
    Method(
        "face_attributes",
        "face_attributes/synthetic",
        "faces",
        gpu=[
            "--model.init_args.model_name=seresnext101_32x4d",
            "--model.init_args.model_kwargs=null",
            "--data.init_args.source.init_args.image_size=224",
            "--data.init_args.source.init_args.batch_size=64",
            "--data.init_args.source.init_args.num_workers=8",
            "--data.init_args.target.init_args.image_size=224",
        ],
        cpu=[
            "--data.init_args.source.init_args.image_size=64",
            "--data.init_args.source.init_args.batch_size=8",
            "--data.init_args.source.init_args.num_workers=0",
            "--data.init_args.target.init_args.image_size=64",
        ],
    ),
    Method(
        "minmaxcam",
        "minmaxcam/synthetic",
        "birds",
        gpu=[
            "--model.init_args.backbone=vgg16",
            "--model.init_args.crr_weight=1.0",
            "--model.init_args.frr_weight=10.0",
            "--data.init_args.image_size=224",
            "--data.init_args.resize_size=256",
            "--data.init_args.num_workers=8",
        ],
        cpu=["--data.init_args.classes_per_batch=2", "--data.init_args.samples_per_class=4"],
    ),
    Method(
        "olr_siamese",  # the paper's scale: 178 px, trunk 32-256, k = 32, ReLU, drawn pairs
        "olr/synthetic_siamese",
        "olr_faces",
        gpu=[
            "--run.init_from=null",  # no teacher run here: a random teacher costs the same
            "--model.init_args.allow_untrained_teacher=true",
            "--data.init_args.image_size=178",
            "--model.init_args.widths=[32,64,128,256]",
            "--model.init_args.teacher_model_kwargs={widths: [32, 64, 128, 256]}",
            "--model.init_args.embedding_dim=32",
            "--model.init_args.embed_act=relu",
            "--model.init_args.train_pairs=drawn",
            "--data.init_args.batch_size=32",
            "--data.init_args.num_workers=8",
        ],
        cpu=[
            "--run.init_from=null",
            "--model.init_args.allow_untrained_teacher=true",
            "--data.init_args.batch_size=4",
            "--data.init_args.num_workers=0",
        ],
        images_per_item=2,
    ),
    Method(
        "disentangled_aae",  # Stage A at the paper's scale: 128 px, widths 64, D_z 1000, batch 100
        "disentangled_aae/synthetic_ae",
        "aae_faces",
        gpu=[
            "--model.init_args.image_size=128",
            "--model.init_args.encoder_channels=64",
            "--model.init_args.generator_channels=64",
            "--model.init_args.discriminator_channels=64",
            "--model.init_args.latent_hidden=1000",
            "--model.init_args.lr=5e-5",
            "--model.init_args.betas=[0.0,0.999]",
            "--model.init_args.cosine_decay=false",
            "--data.init_args.image_size=128",
            "--data.init_args.batch_size=100",
            "--data.init_args.num_workers=8",
        ],
        cpu=["--data.init_args.batch_size=8", "--data.init_args.num_workers=0"],
    ),
    Method(
        "ust",  # the thesis's scale: 256 x 192, MUNIT widths, SD 128, LPIPS-VGG + Gram VGG16
        "ust/synthetic_full",
        "viton",
        gpu=[
            "--model.init_args.base_channels=64",
            "--model.init_args.num_res_blocks=4",
            "--model.init_args.style_dim=128",
            "--model.init_args.style_base_channels=64",
            "--model.init_args.mlp_channels=256",
            "--model.init_args.fit_in_channels=64",
            "--model.init_args.disc_base_channels=64",
            "--model.init_args.disc_num_layers=4",
            "--model.init_args.disc_num_scales=3",
            "--model.init_args.perceptual_net=vgg",
            "--model.init_args.lambda_gram=10.0",  # random trunks: the same cost as ImageNet's
            "--data.init_args.load_size=[256,192]",  # the tiny twin read at the thesis's size
            "--data.init_args.batch_size=8",
            "--data.init_args.num_workers=8",
        ],
        cpu=["--data.init_args.batch_size=2"],
        no_fp16_update_check=(
            "Adam's first step moves each weight by about lr x sign(gradient); under fp16 the "
            "signs of UST's smallest gradients flip, and the update differs from fp32's far "
            "beyond the check's bound, over every layer (docs/results/ust.md); Adam's step is "
            "nearly scale-invariant, so this check could not see a missing unscale here anyway"
        ),
    ),
    Method(
        "exemplar_sr",  # Table 6.1's x8 model: 128 px from 16 px, m = 3, spec widths, the critic
        "exemplar_sr/celeba_x8",
        "exemplar_faces",
        gpu=[
            *RANDOM_LPIPS_TRUNK,
            "--data.init_args.batch_size=8",  # the thesis's N
            "--data.init_args.num_workers=8",
        ],
        cpu=[
            *RANDOM_LPIPS_TRUNK,
            "--model.init_args.isr_widths=[8,8,8]",
            "--model.init_args.encoder_widths=[4,8,8]",
            "--model.init_args.encoder_stem_channels=4",
            "--model.init_args.feature_channels=8",
            "--model.init_args.wnn_channels=8",
            "--model.init_args.small_channels=8",
            "--model.init_args.critic_widths=[4,8]",
            "--data.init_args.batch_size=4",  # the critic's minibatch-stddev group
            "--data.init_args.num_workers=0",
        ],
        no_fp16_update_check=(
            "Adam with beta1 = 0 moves each weight by lr x sign(gradient) on its first step; "
            "under fp16 the signs of the smallest gradients flip (most in the critic, whose "
            "gradient penalty is a double backward), each flip costs 2 lr, and the update "
            "differs from fp32's beyond the check's bound; a sign step is scale-invariant, so "
            "this check could not see a missing unscale here anyway"
        ),
    ),
    Method(
        "mil_lstm",
        "mil_lstm/synthetic_single",
        "mnist",
        gpu=["--data.init_args.batch_size=16"],
        cpu=[],
    ),
)


def write_twin(kind: str, folder: Path, tiny: bool) -> list[str]:
    """Write a synthetic twin under ``folder``; return the data-root overrides that point to it."""
    if kind == "faces":
        # the CelebA DataModule writes its twin on first use (``synthetic``)
        return [
            f"--data.init_args.source.init_args.root={folder / 'celeba'}",
            "--data.init_args.source.init_args.synthetic=tiny",
            f"--data.init_args.target.init_args.root={folder / 'ffhq'}",
        ]
    if kind == "olr_faces":  # the tiny twin, written by the DataModule on first use
        return [
            f"--data.init_args.root={folder / 'celeba'}",
            "--data.init_args.synthetic=tiny",
            "--data.init_args.train_count=300",
        ]
    if kind == "aae_faces":  # the tiny twin, written by the DataModule on first use
        return [f"--data.init_args.root={folder / 'celeba'}", "--data.init_args.synthetic=tiny"]
    if kind == "exemplar_faces":  # the tiny twin, written by the DataModule on first use
        return [f"--data.init_args.root={folder / 'celeba'}", "--data.init_args.synthetic=tiny"]
    if kind == "viton":  # the tiny twin (64 x 48), written by the DataModule on first use
        return [f"--data.init_args.root={folder / 'viton'}", "--data.init_args.synthetic=tiny"]
    if kind == "birds":
        from datamodules.synthetic.birds import make_synthetic_cub

        per_class = (8, 1, 1) if tiny else (40, 2, 2)
        make_synthetic_cub(folder, num_classes=10, per_class=per_class, size_range=(240, 320))
        return [f"--data.init_args.root={folder}"]
    if kind == "mnist":
        from datamodules.synthetic.mnist import write_synthetic_mnist

        write_synthetic_mnist(folder)
        return [f"--data.init_args.root={folder}"]
    raise ValueError(f"unknown twin {kind!r}")


def build(method: Method, overrides: list[str]):
    """(model, datamodule) of ``method``'s experiment YAML with ``overrides``, through the CLI."""
    from experiments.cli import LatentLabCLI

    configs = ["--config", str(REPO / "experiments" / "_base.yaml")]
    configs += ["--config", str(REPO / "experiments" / f"{method.experiment}.yaml")]
    smoke = ["--trainer.fast_dev_run=true", "--trainer.logger=false", "--trainer.callbacks=[]"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = LatentLabCLI(args=[*configs, *smoke, *overrides], run=False)
    return cli.model, cli.datamodule


def measure(method: Method, scratch: Path, cpu: bool, steps: int, warmup: int) -> dict[str, float]:
    """Training images/s of ``method`` per precision (a fresh model for each, same data)."""
    twin = write_twin(method.twin, scratch / method.name, tiny=cpu)
    overrides = twin + (method.cpu if cpu else method.gpu)
    rates = {}
    for precision in PRECISIONS:
        torch.manual_seed(0)
        model, data = build(method, overrides)
        accelerator = "cpu" if cpu else "gpu"
        rate = training_rate(model, data, precision, steps, warmup, accelerator)
        rates[precision] = rate * method.images_per_item
    return rates


#: The metric benchmarks, each run as ``python -m <module> --device <device> <arguments>``: the
#: arguments at GPU scale and at the CPU check's tiny scale. FID of 10,000 generated images at
#: 299 px against cached statistics and torchmetrics' default path comes first.
METRIC_BENCHMARKS: tuple[tuple[str, list[str], list[str]], ...] = (
    (
        "benchmarks.bench_fid",
        ["--n", "10000", "--size", "299", "--batch-size", "200"],
        ["--n", "4", "--size", "16", "--batch-size", "4"],
    ),
    (
        "benchmarks.bench_maxboxacc",
        ["--num-images", "5794", "--families"],  # no CPU-only families
        ["--num-images", "40", "--families"],
    ),
    (
        "benchmarks.bench_frechet",
        [],
        ["--dim", "64", "--many", "200", "--few", "20", "--repeats", "1"],
    ),
)


def metric_benchmarks(cpu: bool, budget: float) -> str:
    """Each metric benchmark on the device in turn, within ``budget`` seconds, output verbatim."""
    device = "cpu" if cpu else "cuda"
    deadline = time.perf_counter() + budget
    sections = []
    for module, gpu_args, cpu_args in METRIC_BENCHMARKS:
        command = [sys.executable, "-m", module, "--device", device]
        command += cpu_args if cpu else gpu_args
        shown = " ".join(command[2:])
        timeout = deadline - time.perf_counter()
        if timeout < 10:
            sections.append(f"`{shown}`: skipped (budget spent)")
            continue
        try:
            done = subprocess.run(
                command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            sections.append(f"`{shown}`: stopped after {timeout:.0f} s (budget)")
            continue
        text = (done.stdout + (done.stderr if done.returncode else "")).strip()
        sections.append(f"`{shown}` (exit {done.returncode}):\n\n```\n{text}\n```")
    return "\n\n".join(sections)


def table(results: dict[str, dict[str, float]]) -> str:
    """Markdown: one row per method, images/s per precision and the bf16/fp32 ratio."""
    lines = [
        "| method | 32-true images/s | bf16-mixed images/s | bf16-mixed / 32-true |",
        "| --- | --- | --- | --- |",
    ]
    for name, rates in results.items():
        if "error" in rates:
            lines.append(f"| {name} | failed: {rates['error']} | | |")
            continue
        fp32, bf16 = rates["32-true"], rates["bf16-mixed"]
        lines.append(f"| {name} | {fp32:.1f} | {bf16:.1f} | {bf16 / fp32:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Path | None:
    """Run every measurement; write and print the table; return the file (None: skipped)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_gpu")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for everything")
    parser.add_argument("--steps", type=int, default=30, help="timed batches per precision")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches first")
    parser.add_argument("--methods", nargs="+", default=[m.name for m in METHODS])
    parser.add_argument("--cpu", action="store_true", help="tiny scale on the CPU (a check)")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("bench-gpu: skipped: no CUDA device (--cpu runs the same at a tiny scale)")
        return None
    unknown = set(args.methods) - {m.name for m in METHODS}
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; known: {[m.name for m in METHODS]}")
    start = time.perf_counter()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="latentlab-bench-gpu-") as scratch:
        for method in (m for m in METHODS if m.name in args.methods):
            if time.perf_counter() - start > args.budget * 0.75:
                results[method.name] = {"error": "skipped: out of budget"}
                continue
            print(f"bench-gpu: {method.name} ...", flush=True)
            try:
                results[method.name] = measure(
                    method, Path(scratch), args.cpu, args.steps, args.warmup
                )
            except Exception as error:  # one failing method must not cost the others' numbers
                results[method.name] = {"error": f"{type(error).__name__}: {error}"[:200]}
    remaining = max(30.0, args.budget - (time.perf_counter() - start))
    device = torch.cuda.get_device_name(0) if not args.cpu else "CPU (--cpu check, tiny scale)"
    report = "\n\n".join(
        [
            f"# GPU benchmarks\n\nDevice: {device}. Command: `python -m benchmarks.gpu "
            f"{' '.join(argv if argv is not None else sys.argv[1:])}`. Ratios are measured in "
            "this run; compare absolute numbers only on the same device.",
            "## Training throughput (data loading included)",
            table(results),
            "## Metric benchmarks",
            metric_benchmarks(args.cpu, remaining),
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "gpu_bench.md"
    path.write_text(report + "\n")
    print(report)
    return path


if __name__ == "__main__":
    main()
