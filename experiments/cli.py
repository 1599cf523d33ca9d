"""latentlab's command line: LightningCLI plus run folders, resume, W&B offline and fit-then-test.

Every run writes ``<run.root>/<run.name>/<timestamp>/`` with the resolved ``config.yaml``,
``checkpoints/`` (including ``last.ckpt``), ``metrics.csv`` (CSVLogger) and ``wandb/`` (W&B's
own files, its own ``config.yaml`` among them, kept apart from ours). ``--run.resume=true``
continues the latest run of that name from its ``last.ckpt`` and the same W&B run (id in
``wandb_run_id.txt``).

    python -m experiments fit --config experiments/_base.yaml --config experiments/<m>/<d>.yaml
    python -m experiments run ...  # = fit --run.evaluate=true: fit, test, predict, one folder
"""

from __future__ import annotations

import netrc
import os
import secrets
import tempfile
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from lightning import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, _InstantiatorFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from lightning.pytorch.utilities.model_helpers import is_overridden

from callbacks.nan_guard import NaNGuard
from callbacks.rng_state import RNGStateCheckpoint
from experiments.loggers import trim_metrics

EXPERIMENTS_DIR = Path(__file__).resolve().parent
RUN_DIR_ENV = "LATENTLAB_RUN_DIR"  # set for DDP child processes (and by cluster scripts)
WANDB_ID_FILE = "wandb_run_id.txt"
TIMESTAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"
DESCRIPTION = (
    "latentlab: fit|validate|test|predict, or run (= fit --run.evaluate=true: fit, then test the "
    "best checkpoint, then predict). Runs go to <run.root>/<run.name>/<timestamp>/."
)


def _name_under_experiments(path: Path) -> str | None:
    if path.is_relative_to(EXPERIMENTS_DIR):
        return path.relative_to(EXPERIMENTS_DIR).with_suffix("").as_posix()
    parts = path.with_suffix("").parts
    if "experiments" in parts[:-1]:
        return "/".join(parts[len(parts) - parts[::-1].index("experiments") :])
    return None


def run_name_from_configs(configs: list[Any]) -> str:
    """``<method>/<dataset>[_<variant>]``: the last ``--config`` under ``experiments/`` (other
    than ``_base.yaml``) relative to it, else the file name of the last ``--config``."""
    paths = [Path(str(c)).resolve() for c in configs or [] if Path(str(c)).name != "_base.yaml"]
    if not paths:
        raise ValueError("Cannot derive --run.name: pass an experiment --config or --run.name")
    names = [n for n in map(_name_under_experiments, paths) if n is not None]
    return names[-1] if names else paths[-1].stem


def new_run_dir(root: Path, name: str, now: datetime | None = None) -> Path:
    """Create ``root/name/<timestamp>`` (``_2``, ``_3``, ... appended when it exists)."""
    stamp = (now or datetime.now()).strftime(TIMESTAMP_FORMAT)
    candidate, n = root / name / stamp, 1
    while candidate.exists():
        n += 1
        candidate = root / name / f"{stamp}_{n}"
    candidate.mkdir(parents=True)
    return candidate


def _stamp_key(path: Path) -> tuple[str, int]:
    stamp, suffix = path.name[:19], path.name[20:]  # "<timestamp>" or "<timestamp>_<n>"
    return stamp, int(suffix) if suffix.isdigit() else 1


def latest_run_dir(root: Path, name: str) -> Path:
    """The newest ``root/name/<timestamp>`` that holds ``checkpoints/last.ckpt``."""
    runs = [p.parent.parent for p in (root / name).glob("*/checkpoints/last.ckpt")]
    if not runs:
        raise FileNotFoundError(
            f"Nothing to resume: no {root / name}/<timestamp>/checkpoints/last.ckpt. "
            "Start the run without RESUME=1 (or --run.resume=false) first."
        )
    return max(runs, key=_stamp_key)


LATEST = "latest:"  # --run.init_from=latest:<name>: the newest run of <name>, its last.ckpt


def resolve_init_from(value: str, root: Path) -> Path:
    """The checkpoint file that ``--run.init_from`` names: a path, or ``latest:<run name>``.

    ``latest:<name>`` is ``checkpoints/last.ckpt`` of the newest ``root/<name>/<timestamp>``, so
    that an experiment YAML can start from the run of another (a pre-training step).
    """
    if not value.startswith(LATEST):
        path = Path(value)
        if not path.is_file():
            raise FileNotFoundError(f"--run.init_from: no checkpoint file {path}")
        return path
    name = value[len(LATEST) :]
    try:
        return latest_run_dir(root, name) / "checkpoints" / "last.ckpt"
    except FileNotFoundError:
        raise FileNotFoundError(
            f"--run.init_from={value}: no {root / name}/<timestamp>/checkpoints/last.ckpt; "
            f"run `make experiment NAME={name}` first (or give a checkpoint path)"
        ) from None


def wandb_has_credentials(environ: dict[str, str], netrc_file: Path) -> bool:
    """True when W&B can log online: ``WANDB_API_KEY`` or an ``api.wandb.ai`` entry in netrc."""
    if environ.get("WANDB_API_KEY"):
        return True
    host = environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].rstrip("/")
    try:
        return netrc.netrc(netrc_file).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def default_precision(accelerator: Any) -> str:
    """bf16-mixed on a CUDA device that supports it, 32-true elsewhere."""
    on_cuda = str(accelerator) in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if on_cuda and torch.cuda.is_bf16_supported() else "32-true"


def last_checkpoint(dirpath: Path) -> ModelCheckpoint:
    """A ModelCheckpoint that overwrites ``dirpath/last.ckpt`` at the end of every epoch."""
    return ModelCheckpoint(
        dirpath=dirpath, filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )


class _OuterOnly:
    """Lightning's instantiator for ``model``/``data``, applied to the outer class only.

    LightningCLI hands the whole ``data`` (``model``) config to ``save_hyperparameters()`` of every
    LightningDataModule (LightningModule) it builds, nested ones included, so a datamodule nested in
    another (the source and target of a label-transfer datamodule) would record its parent's
    hparams. Nested ones are built plainly here and record their own.
    """

    def __init__(self, cli: LightningCLI, key: str) -> None:
        self.cli, self.key, self.outer = cli, key, _InstantiatorFn(cli=cli, key=key)

    def __call__(
        self, class_type: type, *args: Any, applied_instantiation_links: dict, **kwargs: Any
    ) -> Any:
        config = self.cli._get(self.cli.config, self.key)
        outer = config.get("class_path") if isinstance(config, Namespace) else None
        if outer is not None and outer != f"{class_type.__module__}.{class_type.__name__}":
            return class_type(*args, **kwargs)
        links = applied_instantiation_links
        return self.outer(class_type, *args, applied_instantiation_links=links, **kwargs)


def _as_list(value: Any) -> list[Any]:
    if value is None or isinstance(value, bool):
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


class LatentLabCLI(LightningCLI):
    """LightningCLI over any LightningModule / LightningDataModule, with latentlab's run folders.

    Args:
        args: Command-line arguments (``sys.argv[1:]`` when None): ``["fit", "--config", ...]``.
        run: Run the subcommand (False: only parse and instantiate, for tests and notebooks).
        environ: Environment read for W&B credentials and the DDP run folder (``os.environ``).
    """

    def __init__(
        self, args: list[str] | None = None, run: bool = True, environ: dict | None = None
    ) -> None:
        self.environ = os.environ if environ is None else environ
        self.run_dir: Path | None = None
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            parser_kwargs={"parser_mode": "omegaconf", "description": DESCRIPTION},
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        run = {
            "name": (str | None, None, "default: last --config relative to experiments/"),
            "root": (str, "runs", "folder of all runs"),
            "resume": (bool, False, "continue the latest run of this name from its last.ckpt"),
            "evaluate": (bool, False, "after fit: test the best (or last) checkpoint, predict"),
            "init_from": (
                str | None,
                None,
                "fit: start from a checkpoint's weights (fine-tuning); latest:<name> is the "
                "last.ckpt of that name's newest run",
            ),
        }
        for key, (kind, default, text) in run.items():
            parser.add_argument(f"--run.{key}", type=kind, default=default, help=text)
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(NaNGuard, "nan_guard")

    def _add_instantiators(self) -> None:
        super()._add_instantiators()  # replaced below, per (base class, subclasses) key
        for key, base in (("model", LightningModule), ("data", LightningDataModule)):
            self.parser.add_instantiator(_OuterOnly(self, key), base, subclasses=True)

    # ---------------------------------------------------------------- run folder and config edits
    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if self.subcommand == "fit" and cfg.run.get("init_from") is not None:
            # at setup, before a run folder exists; the resolved file goes into config.yaml
            if cfg.get("ckpt_path") is not None:
                raise ValueError("--run.init_from (fine-tune) excludes ckpt_path (resume)")
            cfg.run.init_from = str(resolve_init_from(cfg.run.init_from, Path(cfg.run.root)))
        if cfg.trainer.get("precision") is None:
            cfg.trainer.precision = default_precision(cfg.trainer.get("accelerator", "auto"))
        if self.subcommand and cfg.get("weights_only") is None:
            cfg.weights_only = True  # checkpoints hold tensors and plain types only
        if cfg.trainer.get("fast_dev_run"):  # smoke run: no run folder; files callbacks write
            if cfg.trainer.get("default_root_dir") is None:  # go to a temporary folder, not cwd
                cfg.trainer.default_root_dir = tempfile.mkdtemp(prefix="latentlab-smoke-")
            rank_zero_info(f"Smoke run: callback outputs in {cfg.trainer.default_root_dir}")
            return
        name = cfg.run.name or run_name_from_configs(cfg.get("config"))
        cfg.run.name = name
        self.run_dir = self._select_run_dir(cfg, Path(cfg.run.root), name)
        cfg.trainer.default_root_dir = str(self.run_dir)
        cfg.checkpoint.dirpath = str(self.run_dir / "checkpoints")
        # last.ckpt every epoch, for resuming. A monitored ModelCheckpoint writes `last` only in
        # epochs where it saved a top-k checkpoint, so then a second, unmonitored one writes it.
        cfg.checkpoint.save_last = not cfg.checkpoint.get("monitor")
        self._configure_loggers(cfg, name)

    def _select_run_dir(self, cfg: Namespace, root: Path, name: str) -> Path:
        if cfg.run.resume:
            run_dir = latest_run_dir(root, name)
            if self.subcommand == "fit" or cfg.get("ckpt_path") is None:
                cfg.ckpt_path = str(run_dir / "checkpoints" / "last.ckpt")
            if self.subcommand == "fit" and rank_zero_only.rank == 0:
                ckpt = torch.load(cfg.ckpt_path, map_location="cpu", mmap=True, weights_only=True)
                trim_metrics(run_dir / "metrics.csv", last_epoch=int(ckpt["epoch"]))
            rank_zero_info(f"Resuming {run_dir} from {cfg.ckpt_path}")
        elif (
            self.environ.get(RUN_DIR_ENV) and Path(self.environ[RUN_DIR_ENV]).parent == root / name
        ):
            run_dir = Path(self.environ[RUN_DIR_ENV])
            run_dir.mkdir(parents=True, exist_ok=True)
        else:
            run_dir = new_run_dir(root, name)
        self.environ[RUN_DIR_ENV] = str(run_dir)  # DDP children re-run this script: same folder
        return run_dir

    def _configure_loggers(self, cfg: Namespace, name: str) -> None:
        assert self.run_dir is not None
        for logger in _as_list(cfg.trainer.get("logger")):
            if not isinstance(logger, Namespace) or "class_path" not in logger:
                continue
            kind = logger.class_path.rsplit(".", 1)[-1]
            args = logger.init_args
            if kind in ("CSVLogger", "ResumableCSVLogger", "TensorBoardLogger"):
                args.save_dir = str(self.run_dir)
                args.name = "tensorboard" if kind == "TensorBoardLogger" else ""
                args.version = ""
            elif kind == "WandbLogger":
                self._configure_wandb(logger, name)

    def _configure_wandb(self, logger: Namespace, name: str) -> None:
        assert self.run_dir is not None
        args = logger.init_args
        args.save_dir = str(self.run_dir)  # W&B writes <run>/wandb/..., never <run>/config.yaml
        args.name = args.get("name") or f"{name}/{self.run_dir.name}"
        id_file = self.run_dir / WANDB_ID_FILE
        if id_file.is_file():
            args.id = id_file.read_text().strip()
        else:
            # a W&B sweep agent chooses the id (WANDB_RUN_ID); else a fresh one, no global RNG draw
            args.id = args.get("id") or self.environ.get("WANDB_RUN_ID") or secrets.token_hex(4)
            if rank_zero_only.rank == 0:
                id_file.write_text(args.id + "\n")
        method, _, dataset = name.partition("/")
        defaults = {"group": method, "tags": [dataset.split("_")[0]] if dataset else []}
        # jsonargparse resolves WandbLogger's **kwargs to wandb.init's parameters when it can
        extra = args if "group" in args else Namespace(logger.get("dict_kwargs") or {})
        for key, value in {**defaults, "resume": "allow"}.items():
            if extra.get(key) is None:
                extra[key] = value
        if extra is not args:
            logger.dict_kwargs = extra.as_dict()
        mode = self.environ.get("WANDB_MODE")
        if mode is None and not args.get("offline"):
            netrc_file = Path(self.environ.get("NETRC", Path.home() / ".netrc"))
            args.offline = not wandb_has_credentials(self.environ, netrc_file)
        if args.get("offline") or mode in ("offline", "dryrun"):
            rank_zero_info(f'W&B offline: sync later with "wandb sync {self.run_dir / "wandb"}"')

    # ---------------------------------------------------------------- trainer and callbacks
    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        callbacks = list(_as_list(trainer_cfg.get("callbacks"))) + [RNGStateCheckpoint()]
        has_bar = any(isinstance(c, ProgressBar) for c in callbacks)
        if trainer_cfg.get("enable_progress_bar") is not False and not has_bar:
            callbacks.append(RichProgressBar())
        extra = [
            self._get(self.config_init, k) for k in self._parser(self.subcommand).callback_keys
        ]
        if trainer_cfg.get("enable_checkpointing") is False:  # Trainer refuses a ModelCheckpoint
            extra = [c for c in extra if not isinstance(c, ModelCheckpoint)]
        elif self.run_dir is not None and self._get(self.config, "checkpoint").get("monitor"):
            extra.append(last_checkpoint(self.run_dir / "checkpoints"))  # after the monitored one
        return self._instantiate_trainer({**trainer_cfg, **kwargs, "callbacks": callbacks}, extra)

    # ---------------------------------------------------------------- fit, then test and predict
    def before_fit(self) -> None:
        """``--run.init_from``: load a checkpoint's weights (tensors only, strict) before fitting.

        Unlike ``ckpt_path`` (resume), the optimizer, schedule and epoch counter start afresh.
        The file was resolved (and checked) in ``before_instantiate_classes``.
        """
        path = self.config.fit.run.get("init_from")
        if path is None:
            return
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        self.model.load_state_dict(state, strict=True)
        rank_zero_info(f"Fine-tuning from the weights of {path}")

    def after_fit(self) -> None:
        if not self.config.fit.run.evaluate or self.trainer.interrupted:
            return
        callback = self.trainer.checkpoint_callback
        if self.trainer.fast_dev_run or callback is None:
            ckpt = None  # nothing was saved: evaluate the weights in memory
        else:
            ckpt = "best" if callback.monitor else "last"
        # "best" comes from the first ModelCheckpoint, the monitored one (last.ckpt's comes after)
        warnings.filterwarnings("ignore", message=r".*multiple `ModelCheckpoint` callbacks")
        if is_overridden("test_dataloader", self.datamodule, LightningDataModule):
            self.trainer.test(
                self.model, datamodule=self.datamodule, ckpt_path=ckpt, weights_only=True
            )
            ckpt = None  # predict with the tested weights and what test computed (thresholds)
        else:
            rank_zero_info("The datamodule defines no test data: skipping test.")
        if is_overridden("predict_dataloader", self.datamodule, LightningDataModule):
            self.trainer.predict(
                self.model, datamodule=self.datamodule, ckpt_path=ckpt, weights_only=True,
                return_predictions=False,
            )  # fmt: skip
