"""Run every cell of thesis Table 7.1 (MNIST-bags MIL error rates) for N seeds; write table71.md.

Each cell is the experiment YAML ``experiments/mil_lstm/mnist_<column>_<method>.yaml``; this script
instantiates its model and data (seed, root and --overrides applied), fits with checkpoint
selection on ``val/select``, tests the best checkpoint and records ``test/error``.

    python -m experiments.mil_lstm.table71 --seeds 5 --max-epochs 100 --jobs 8 \
        --root ../shared/data/mnist --out runs/mil_lstm/table71/<ts>
    python -m experiments.mil_lstm.table71 --smoke          # tiny end-to-end check on CPU

Writes ``<out>/results.json`` (one record per run, appended as runs finish) and
``<out>/table71.md`` (ours mean +/- std next to the thesis numbers).
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

HERE = Path(__file__).resolve().parent
COLUMNS = ["single_sigma2", "single_sigma8", "multiple", "counting", "outlier"]
METHODS = ["attention", "gated_attention", "dynamic_pooling", "lstm_nomi", "lstm"]
METHOD_NAMES = {
    "attention": "Atten. Based",
    "gated_attention": "Gated Atten. Based",
    "dynamic_pooling": "Dyn. Pool",
    "lstm_nomi": "Ours w/o Mut. Info.",
    "lstm": "Ours",
}
#: Thesis Table 7.1, mean error % (+/- std); * = baseline trained with the MI loss.
THESIS = {
    "attention": ["2.8 ± 4.8", "4.5 ± 0.4", "28.5 ± 0.7", "33.4 ± 19.3", "37.0*"],
    "gated_attention": ["4.0 ± 0.9", "4.6 ± 0.5", "27.4 ± 0.9", "11.9 ± 3.6", "37.4*"],
    "dynamic_pooling": ["5.6 ± 1.1", "6.1 ± 1.2", "28.5 ± 6.6", "25.4 ± 1.8", "40.9*"],
    "lstm_nomi": ["3.5 ± 1.1", "3.1 ± 0.5", "6.4 ± 1.4", "9.0 ± 2.7", "50.0"],
    "lstm": ["4.0 ± 0.4", "4.1 ± 1.4", "3.5 ± 1.3", "7.4 ± 1.2", "2.07"],
}
SMOKE_DATA = {"num_train_bags": 16, "num_val_bags": 8, "num_test_bags": 16}


def config_path(column: str, method: str) -> Path:
    return HERE / f"mnist_{column}_{method}.yaml"


def _instantiate(spec: dict, **overrides):
    module, _, name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(**{**spec.get("init_args", {}), **overrides})


def run_cell(column: str, method: str, seed: int, args: dict) -> dict:
    """Fit one (cell, seed) and test its best-on-val checkpoint; return a result record."""
    import torch
    from lightning import Trainer, seed_everything
    from lightning.pytorch.callbacks import ModelCheckpoint

    torch.set_num_threads(args["threads"])
    config = OmegaConf.to_container(OmegaConf.load(config_path(column, method)))
    data_overrides = {"seed": seed, "root": args["root"], **args["data_overrides"]}
    seed_everything(seed, workers=True)
    datamodule = _instantiate(config["data"], **data_overrides)
    model = _instantiate(config["model"])
    run_dir = Path(args["out"]) / f"{column}_{method}" / f"seed{seed}"
    checkpoint = ModelCheckpoint(
        dirpath=run_dir, monitor="val/select", mode="min", save_top_k=1, save_weights_only=True
    )
    trainer = Trainer(
        accelerator=args["accelerator"],
        devices=1,
        precision="32-true",
        max_epochs=args["max_epochs"],
        logger=False,
        callbacks=[checkpoint],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    start = time.time()
    trainer.fit(model, datamodule=datamodule)
    metrics = trainer.test(model, datamodule=datamodule, ckpt_path="best", verbose=False)[0]
    return {
        "column": column,
        "method": method,
        "seed": seed,
        "seconds": time.time() - start,
        "test_error": metrics["test/error"],
        "best_checkpoint": checkpoint.best_model_path,
        **{k: v for k, v in metrics.items() if k != "test/error"},
    }


def summarize(records: list[dict]) -> dict[tuple[str, str], tuple[float, float, int]]:
    """(column, method) -> (mean, std, n) of the test error over seeds (population std)."""
    cells: dict[tuple[str, str], list[float]] = {}
    for r in records:
        cells.setdefault((r["column"], r["method"]), []).append(r["test_error"])
    return {k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in cells.items()}


def write_table(records: list[dict], path: Path, header: str) -> str:
    """Markdown table: ours mean +/- std (n seeds) | thesis, per method and column."""
    summary = summarize(records)
    head = "| method | " + " | ".join(COLUMNS) + " |"
    lines = [
        header,
        "",
        "Cells: ours mean ± std over seeds (n) / thesis Table 7.1.",
        "",
        head,
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for method in METHODS:
        cells = []
        for c, column in enumerate(COLUMNS):
            ours = summary.get((column, method))
            text = f"{ours[0]:.1f} ± {ours[1]:.1f} ({ours[2]})" if ours else "–"
            cells.append(f"{text} / {THESIS[method][c]}")
        lines.append(f"| {METHOD_NAMES[method]} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="runs per cell (seeds 1..N)")
    parser.add_argument("--max-epochs", type=int, default=100, help="100 in the thesis")
    parser.add_argument(
        "--root", default=None, help="MNIST folder (default: $LATENTLAB_DATA/mnist)"
    )
    parser.add_argument("--out", default=None, help="default runs/mil_lstm/table71/<timestamp>")
    parser.add_argument("--columns", nargs="+", default=COLUMNS, choices=COLUMNS)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--batch-size", type=int, default=None, help="bags per step (paper: 1)")
    parser.add_argument("--smoke", action="store_true", help="16 bags, 1 epoch, 2 seeds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = Path(args.out or f"runs/mil_lstm/table71/{stamp}")
    out.mkdir(parents=True, exist_ok=True)
    data_overrides = dict(SMOKE_DATA) if args.smoke else {}
    if args.batch_size is not None:
        data_overrides["batch_size"] = args.batch_size
    seeds, epochs = (2, 1) if args.smoke else (args.seeds, args.max_epochs)
    shared = {
        "root": args.root,
        "out": str(out),
        "max_epochs": epochs,
        "threads": args.threads,
        "accelerator": args.accelerator,
        "data_overrides": data_overrides,
    }
    jobs = [(c, m, s) for c in args.columns for m in args.methods for s in range(1, seeds + 1)]
    header = (
        f"# Table 7.1 reproduction ({'smoke: ' if args.smoke else ''}{seeds} seeds, "
        f"{epochs} epochs, data overrides {data_overrides or 'none'})"
    )
    records = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        futures = [pool.submit(run_cell, c, m, s, shared) for c, m, s in jobs]
        for future in as_completed(futures):
            records.append(future.result())
            r = records[-1]
            print(
                f"[{len(records)}/{len(jobs)}] {r['column']} {r['method']} seed {r['seed']}: "
                f"error {r['test_error']:.2f} % ({r['seconds']:.0f} s)",
                flush=True,
            )
            (out / "results.json").write_text(json.dumps(records, indent=1))
            write_table(records, out / "table71.md", header)
    print(write_table(records, out / "table71.md", header))
    return out


if __name__ == "__main__":
    main()
