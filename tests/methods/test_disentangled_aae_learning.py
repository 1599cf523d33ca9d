"""The disentangled AAE learns on the small synthetic twin: the spec's section 9 checks (slow).

The stages run as ``make experiment NAME=disentangled_aae/synthetic`` runs them: ``python -m
experiments run`` with the stage YAMLs (``experiments/disentangled_aae/synthetic_*.yaml``) in
subprocesses, every run folder under one temporary ``--run.root`` (so each
``best:disentangled_aae/synthetic_<stage>`` loads this chain's stage), then ``python -m
experiments.disentangled_aae.analyze --root``. The twin (small preset, CelebA layout and its
``vox/`` clip tree) is written once into a temporary folder. The stage fixtures chain, and each
test asks only for the stages it checks.

The instruments are the spec's: the twin's ground-truth factors (its sidecar, z-scored by
``tests/factor_oracle.read_factors``) for the probe matrix, and the factor oracle
(``tests/factor_oracle``, a CNN that reads the factors a decoded face shows) for the swap test.
Each check has its control in the same test: an untrained autoencoder (Stage A), a randomly
initialised Phi on the trained autoencoder (probe matrix, swap), or an untrained model
(verification).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import stage_chain
import torch
from ddp_runs import clean_env, run_processes
from factor_oracle import read_factors, train_oracle

from datamodules.verification_pairs import verification_pairs
from experiments.stage_runs import find_stage_run
from lightning_modules.components.ridge_probe import ridge_r2
from lightning_modules.components.verification import fit_and_score, pair_distances
from lightning_modules.disentangled_aae.module import DisentangledAAE
from lightning_modules.disentangled_aae.pixels import pixel_rmse
from lightning_modules.disentangled_aae.transfer import transfer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
STAGE_TIMEOUT_S = 1200.0
ORACLE_CACHE = REPO / "data" / "synthetic_faces_small"
GROUPS = ("pose", "identity", "expression", "style")


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, Path]:
    """The twin's CelebA folder and the run root of this chain."""
    return stage_chain.small_twin_chain(tmp_path_factory, "aae")


def run_stage(chain: dict[str, Path], stage: str) -> Path:
    """``experiments/disentangled_aae/synthetic_<stage>.yaml`` on this chain."""
    return stage_chain.run_stage(chain, "disentangled_aae", stage, timeout=STAGE_TIMEOUT_S)


@pytest.fixture(scope="module")
def stage_a(chain) -> Path:
    return run_stage(chain, "ae")


@pytest.fixture(scope="module")
def stage_b(chain, stage_a) -> Path:
    return run_stage(chain, "disentangle")


@pytest.fixture(scope="module")
def stage_c(chain, stage_b) -> Path:
    return run_stage(chain, "joint")


@pytest.fixture(scope="module")
def analysis(chain, stage_c) -> dict:
    command = [sys.executable, "-m", "experiments.disentangled_aae.analyze"]
    command += ["--root", str(chain["runs"]), "--device", "cpu", "--no-progress"]
    run_processes([("analysis", command, clean_env({"OMP_NUM_THREADS": "2"}))], timeout=900.0)
    return json.loads((chain["runs"] / "analysis" / "analysis.json").read_text())


def _metrics(run_dir: Path) -> dict[str, list[float]]:
    """Every logged key's values in logging order (metrics.csv)."""
    series: dict[str, list[float]] = {}
    with (run_dir / "metrics.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                if value:
                    series.setdefault(key, []).append(float(value))
    return series


def _module(chain, name: str) -> tuple[DisentangledAAE, object]:
    """The stage run's module (eval, CPU) and its DataModule (mirroring off), set up."""
    run = find_stage_run(chain["runs"], f"disentangled_aae/synthetic_{name}", "stage")
    data = run.datamodule(root=str(chain["data"]), synthetic=None, stage="ae", flip_probability=0.0)
    data.setup("fit")
    return run.load_module().eval(), data


@torch.no_grad()
def _codes(module: DisentangledAAE, dataset, phi: bool = True) -> torch.Tensor:
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    z = torch.cat([module.encoder(part) for part in images.split(256)])
    return torch.cat([module.phi(part) for part in z.split(256)]) if phi else z


def _images(dataset) -> torch.Tensor:
    return torch.stack([dataset[i]["image"] for i in range(len(dataset))])


# --- Stage A ------------------------------------------------------------------------------------


def test_stage_a_reconstructs_better_than_half_the_mean_image(chain, stage_a):
    """Test RMSE (0-255) < 0.5 x the mean train image's; an untrained autoencoder is far above."""
    test = _metrics(stage_a)
    rmse, baseline = test["test/rmse"][-1], test["test/rmse_mean_image"][-1]
    assert rmse < 0.5 * baseline, (rmse, baseline)

    trained, data = _module(chain, "ae")
    untrained = DisentangledAAE(**dict(trained.hparams)).eval()
    images = _images(data.splits["test"])
    with torch.no_grad():
        recon = torch.cat([untrained(part) for part in images.split(256)])
    control = pixel_rmse(images, recon).mean().item()
    assert control > 0.5 * baseline, (control, baseline)


def _oracle(chain):
    """The 32 px factor oracle of the chain's twin (cached under ``ORACLE_CACHE``)."""
    oracle, _ = train_oracle(chain["data"], 5, 0, ORACLE_CACHE, fresh_images=9000, image_size=32)
    return oracle


def _agreement(oracle, images: torch.Tensor, decoded: torch.Tensor, group: str) -> float:
    """Mean over the group's columns of the R^2 of the oracle's reading of ``decoded`` as a
    prediction of its reading of ``images``."""
    truth, read = oracle.read(images)[group].double(), oracle.read(decoded)[group].double()
    r2 = 1 - (truth - read).square().sum(0) / (truth - truth.mean(0)).square().sum(0)
    return r2.mean().item()


@pytest.mark.xfail(
    reason="borderline on the CPU tier: below 0.7 after the pipeline's 16 epochs, just above "
    "after 20, which do not fit its 20 minutes (numbers: docs/results/disentangled_aae.md)",
    raises=AssertionError,
    strict=False,
)
def test_stage_a_reconstructions_show_the_pose(chain, stage_a):
    """Spec section 9, Stage A: the oracle's pose of G(E(x)) follows its pose of x (R^2 > 0.7 over
    the three angles) on the test images; not for an untrained autoencoder."""
    oracle = _oracle(chain)
    trained, data = _module(chain, "ae")
    images = _images(data.splits["test"])
    untrained = DisentangledAAE(**dict(trained.hparams)).eval()
    with torch.no_grad():
        recon = torch.cat([trained(part) for part in images.split(256)])
        control = torch.cat([untrained(part) for part in images.split(256)])
    assert _agreement(oracle, images, recon, "pose") > 0.7
    assert _agreement(oracle, images, control, "pose") < 0.7


def test_fid_falls_over_stage_a(stage_a):
    """FID of G(z*) against the validation images (random conv features): the last epoch's is
    well under the first epoch's."""
    fid = _metrics(stage_a)["val/fid"]
    assert len(fid) >= 3 and fid[-1] < 0.7 * fid[0], fid


# --- the probe matrix ---------------------------------------------------------------------------


def _probe_matrix(module, data, chain) -> dict[str, dict[str, float]]:
    """R^2 of a ridge probe from each sub-vector of f to each factor group (twin ground truth,
    train split -> test split)."""
    ids, factors, _ = read_factors(chain["data"])
    row = {name: i for i, name in enumerate(ids)}
    out: dict[str, dict[str, float]] = {}
    parts = {}
    for split in ("train", "test"):
        dataset = data.splits[split]
        f = _codes(module, dataset)
        rows = [row[name] for name in dataset.names]
        parts[split] = (f, {g: torch.as_tensor(factors[g][rows]) for g in GROUPS})
    for block in GROUPS:
        x_train = module.split.part(parts["train"][0], block)
        x_test = module.split.part(parts["test"][0], block)
        out[block] = {
            g: ridge_r2(x_train, parts["train"][1][g], x_test, parts["test"][1][g], 1.0)
            .mean()
            .item()
            for g in GROUPS
        }
    return out


def _diagonal_dominant(matrix: dict[str, dict[str, float]], margin: float) -> list[str]:
    """The factors whose own sub-vector does not predict them best by ``margin``."""
    return [
        g for g in GROUPS if any(matrix[g][g] < matrix[k][g] + margin for k in GROUPS if k != g)
    ]


NOT_ENCODED = (
    "not reached on the CPU tier: Stage A encodes the head pose but hardly the expression, and "
    "the short Stage B leaves the pose readable from every sub-vector, so swapping f_p moves "
    "little (numbers: docs/results/disentangled_aae.md)"
)


@pytest.mark.xfail(reason=NOT_ENCODED, raises=AssertionError, strict=True)
def test_probe_matrix_is_diagonal_dominant_and_not_for_a_random_phi(chain, stage_c):
    module, data = _module(chain, "joint")
    matrix = _probe_matrix(module, data, chain)
    assert matrix["pose"]["pose"] >= 0.8, matrix
    assert matrix["identity"]["pose"] <= 0.3 and matrix["expression"]["pose"] <= 0.3, matrix
    assert _diagonal_dominant(matrix, margin=0.1) == [], matrix

    random_phi = DisentangledAAE(**dict(module.hparams)).phi
    module.phi.load_state_dict(random_phi.state_dict())
    control = _probe_matrix(module, data, chain)
    assert _diagonal_dominant(control, margin=0.1) != [], control


# --- verification -------------------------------------------------------------------------------


@pytest.mark.xfail(
    reason="borderline on the CPU tier: f_id lands around 0.9 after Stages B and C, above it in "
    "the current configuration, below it in the earlier one (docs/results/disentangled_aae.md)",
    raises=AssertionError,
    strict=False,
)
def test_verification_with_f_id_and_not_with_f_p(analysis):
    accuracy = analysis["table2"]["joint"]["accuracy"]
    assert accuracy["identity"] >= 0.9, accuracy
    assert accuracy["pose"] <= 0.65, accuracy


def _verification(module, data) -> float:
    """f_id verification accuracy: threshold fitted on val pairs, scored on test pairs."""
    scores = {}
    for split in ("val", "test"):
        dataset = data.splits[split]
        pairs = verification_pairs(dataset.identities, 200, 200, seed=0)
        f_id = module.split.part(_codes(module, dataset), "identity")
        scores[split] = (pair_distances(f_id, pairs.index), pairs.same)
    return fit_and_score(*scores["val"], *scores["test"])[1]


def test_an_untrained_model_does_not_verify(chain, stage_c):
    module, data = _module(chain, "joint")
    untrained = DisentangledAAE(**dict(module.hparams)).eval()
    assert _verification(untrained, data) < 0.9


# --- the swap test ------------------------------------------------------------------------------


@pytest.mark.xfail(reason=NOT_ENCODED, raises=AssertionError, strict=True)
def test_swapping_f_p_moves_the_pose_and_keeps_the_identity(chain, stage_c):
    """For 200 random (source, target) test pairs, decode f_t with f_p <- f_s: the oracle's pose
    of the result is closer to the source's in >= 80% of pairs and its identity closer to the
    target's in >= 80% (both against the oracle's reading of the reconstructions of s and t).
    Swapping the first 3 dims of z instead (no Phi) moves the pose clearly less often."""
    oracle = _oracle(chain)
    module, data = _module(chain, "joint")
    images = _images(data.splits["test"])
    g = torch.Generator().manual_seed(0)
    source, target = torch.randint(len(images), (2, 200), generator=g)
    keep = source != target
    source, target = source[keep], target[keep]
    with torch.no_grad():
        f = torch.cat([module.factors(part) for part in images.split(256)])
        z = torch.cat([module.encoder(part) for part in images.split(256)])
        recon = module.decode_factors(f)
        swapped = module.decode_factors(transfer(f[target], f[source], module.split, "pose"))
        raw = z[target].clone()
        raw[:, :3] = z[source, :3]
        raw_swapped = module.generate(raw)
    read = oracle.read(recon)
    after, after_raw = oracle.read(swapped), oracle.read(raw_swapped)

    def closer_to_source(reading, group) -> float:
        d_s = (reading[group] - read[group][source]).norm(dim=1)
        d_t = (reading[group] - read[group][target]).norm(dim=1)
        return (d_s < d_t).float().mean().item()

    pose, identity = closer_to_source(after, "pose"), closer_to_source(after, "identity")
    assert pose >= 0.8, pose
    assert 1 - identity >= 0.8, identity
    assert closer_to_source(after_raw, "pose") < pose - 0.2
