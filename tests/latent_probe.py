"""How much of each twin factor the disentangled AAE's code z holds: a Stage A diagnostic.

    python tests/latent_probe.py --epochs 20 --stem cifar --structural-weight 60

trains Stage A (``DisentangledAAE(stage="ae")``, the sizes of
``experiments/disentangled_aae/synthetic_ae.yaml``: 32 px, widths 16, D_z hidden 256, Adam 1e-3
betas (0.5, 0.999) on a cosine over ``--epochs``) on the small synthetic twin and, after every
epoch, prints the held-out R^2 of a ridge probe (alpha 1) from z to the twin's TRUE factors
(its sidecar, ``factor_oracle.read_factors``): pose (yaw, pitch, roll), expression (valence,
arousal) and the camera nuisances (dx, dy, scale). The probe trains on 2,000 random unmirrored
train images and is scored on the 607 validation images. The stage and the probe are seeded
(``--seed``); one thread, as the results were measured (``OMP_NUM_THREADS=1``).

A test instrument, not the method: it answers whether Stage B can find a factor in z at all
(Phi cannot separate what z does not hold). ``docs/results/disentangled_aae.md`` quotes its
numbers for the encoder stems and reconstruction losses it was run with.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from lightning import Callback, Trainer, seed_everything

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from factor_oracle import read_factors  # noqa: E402

from datamodules.disentangled_aae import DisentangledAAEDataModule  # noqa: E402
from lightning_modules.components.ridge_probe import ridge_r2  # noqa: E402
from lightning_modules.disentangled_aae.module import DisentangledAAE  # noqa: E402

GROUPS = {
    "pose": ("yaw", "pitch", "roll"),
    "expression": ("valence", "arousal"),
    "nuisance": ("dx", "dy", "scale"),
}
TWIN = REPO / "data" / "synthetic_faces_small" / "celeba"


def _sample(dataset, count: int, seed: int, rows: dict[str, int]) -> tuple[torch.Tensor, list]:
    """``count`` random unmirrored images of a split and their sidecar rows."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    keep, dataset.flip_probability = dataset.flip_probability, 0.0
    items = [dataset[i] for i in order[:count].tolist()]
    dataset.flip_probability = keep
    return torch.stack([i["image"] for i in items]), [rows[i["image_id"]] for i in items]


class LatentProbe(Callback):
    """Prints the ridge R^2 of every factor from z after each training epoch."""

    def __init__(self, train: tuple, val: tuple, factors: dict) -> None:
        self.train, self.val, self.factors = train, val, factors
        self.start = time.time()

    @torch.no_grad()
    def on_train_epoch_end(self, trainer, module) -> None:
        module.eval()
        z_train = torch.cat([module.encoder(p) for p in self.train[0].split(256)])
        z_val = torch.cat([module.encoder(p) for p in self.val[0].split(256)])
        module.train()
        parts = []
        for group, values in self.factors.items():
            y_train = torch.as_tensor(values[self.train[1]])
            y_val = torch.as_tensor(values[self.val[1]])
            r2 = ridge_r2(z_train, y_train, z_val, y_val, alpha=1.0)
            parts.append(f"{group} " + "/".join(f"{v:.2f}" for v in r2.tolist()))
        elapsed = time.time() - self.start
        print(f"epoch {trainer.current_epoch} ({elapsed:.0f} s): " + ", ".join(parts), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--stem", choices=("imagenet", "cifar"), default="cifar")
    parser.add_argument("--structural-weight", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not TWIN.is_dir():
        from datamodules.synthetic.faces import write_synthetic_faces

        write_synthetic_faces(TWIN.parent, preset="small", seed=0)
    seed_everything(args.seed)
    module = DisentangledAAE(
        stage="ae",
        image_size=32,
        encoder_channels=16,
        encoder_stem=args.stem,
        generator_channels=16,
        discriminator_channels=16,
        latent_hidden=256,
        structural_weight=args.structural_weight,
        lr=1e-3,
        betas=(0.5, 0.999),
        cosine_decay=True,
    )
    data = DisentangledAAEDataModule(
        root=str(TWIN), image_size=32, hist_eq=False, batch_size=64, num_workers=0
    )
    data.setup("fit")
    ids, factors, _ = read_factors(TWIN, GROUPS)
    rows = {name: i for i, name in enumerate(ids)}
    probe = LatentProbe(
        _sample(data.splits["train"], 2000, 1, rows),
        _sample(data.splits["val"], len(data.splits["val"]), 1, rows),
        factors,
    )
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=args.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[probe],
    )
    trainer.fit(module, datamodule=data)


if __name__ == "__main__":
    main()
