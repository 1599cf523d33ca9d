"""latentlab's command line: LightningCLI plus run folders, resume, W&B offline and fit-then-test.

Every run writes ``<run.root>/<run.name>/<timestamp>/`` with the resolved ``config.yaml``,
``checkpoints/`` (including ``last.ckpt``), ``metrics.csv`` (:mod:`experiments.loggers`) and
``wandb/`` (W&B's own files, its own ``config.yaml`` among them, kept apart from ours).
``--run.resume=true`` continues the latest run of that name from its ``last.ckpt`` and the same W&B
run (:mod:`experiments.wandb_setup`). ``--run.init_from`` starts a fit from (parts of) other runs'
weights (:mod:`experiments.init_from`).

    python -m experiments fit --config experiments/_base.yaml --config experiments/<m>/<d>.yaml
    python -m experiments run ...  # = fit --run.evaluate=true: fit, test, predict, one folder

The order of a command: parse; choose the run folder and fill in the config
(``before_instantiate_classes``, nothing written); build model, data, loggers and callbacks; check
and load ``--run.init_from`` into the model; create the run folder; build the Trainer; run. So a
configuration that cannot start leaves no folder behind. Only public LightningCLI hooks are
overridden; ``pyproject.toml`` pins the Lightning versions they are tested with.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import Namespace
from lightning import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from lightning.pytorch.utilities.model_helpers import is_overridden

from callbacks.nan_guard import NaNGuard
from callbacks.rng_state import RNGStateCheckpoint
from experiments.init_from import InitFrom, load_init_from, resolve_init_from
from experiments.loggers import configure_loggers, trim_metrics
from experiments.nested_modules import nested_instantiators
from experiments.run_dirs import RUN_DIR_ENV, choose_run_dir, run_name_from_configs
from experiments.wandb_setup import WANDB_ID_FILE

DESCRIPTION = (
    "latentlab: fit|validate|test|predict, or run (= fit --run.evaluate=true: fit, then test the "
    "best checkpoint, then predict). Runs go to <run.root>/<run.name>/<timestamp>/."
)


def default_precision(accelerator: Any) -> str:
    """bf16-mixed on a CUDA device that supports it, 32-true elsewhere."""
    on_cuda = str(accelerator) in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if on_cuda and torch.cuda.is_bf16_supported() else "32-true"


def last_checkpoint(dirpath: Path) -> ModelCheckpoint:
    """A ModelCheckpoint that overwrites ``dirpath/last.ckpt`` at the end of every epoch."""
    return ModelCheckpoint(
        dirpath=dirpath, filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )


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

    Attributes:
        run_dir: The run folder (None for a smoke run, which makes none).
    """

    def __init__(
        self, args: list[str] | None = None, run: bool = True, environ: dict | None = None
    ) -> None:
        self.environ = os.environ if environ is None else environ
        self.run_dir: Path | None = None
        self._init_from: list[InitFrom] = []
        self._resume_epoch: int | None = None  # epoch of the checkpoint a resumed fit starts from
        self._wandb_id: str | None = None
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            parser_kwargs={  # errors raise (experiments.config_errors); no option by its prefix
                "parser_mode": "omegaconf",
                "description": DESCRIPTION,
                "exit_on_error": False,
                "allow_abbrev": False,
            },  # fmt: skip
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,  # every module has its configure_optimizers
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
                str | list[InitFrom] | None,
                None,
                "fit: start from a checkpoint's weights (fine-tuning; latest:<name> is the "
                "last.ckpt of that name's newest run), or from parts of checkpoints: a list of "
                "{checkpoint, source: submodule there, target: submodule here}",
            ),
        }
        for key, (kind, default, text) in run.items():
            parser.add_argument(f"--run.{key}", type=kind, default=default, help=text)
        # built here and handed to the Trainer by instantiate_trainer (not a Lightning callback
        # key), which drops it when checkpointing is off and puts last.ckpt's writer after it
        parser.add_class_arguments(
            ModelCheckpoint, "checkpoint", fail_untyped=False, sub_configs=True
        )
        parser.add_lightning_class_args(NaNGuard, "nan_guard")

    def _active(self, config: Namespace) -> Namespace:
        """The part of ``config`` for this subcommand (all of it without one)."""
        return config[self.subcommand] if self.subcommand else config

    # ---------------------------------------------------------------- the config, before building
    def before_instantiate_classes(self) -> None:
        cfg = self._active(self.config)
        if cfg.trainer.get("precision") is None:
            cfg.trainer.precision = default_precision(cfg.trainer.get("accelerator", "auto"))
        if self.subcommand and cfg.get("weights_only") is None:
            cfg.weights_only = True  # checkpoints hold tensors and plain types only
        fine_tune = self.subcommand in ("fit", None) and cfg.run.get("init_from") is not None
        if fine_tune and cfg.get("ckpt_path") is not None:
            raise ValueError("--run.init_from (fine-tune) excludes ckpt_path (resume)")
        if cfg.trainer.get("fast_dev_run"):  # smoke run: no run folder; files callbacks write
            if cfg.trainer.get("default_root_dir") is None:  # go to a temporary folder, not cwd
                cfg.trainer.default_root_dir = tempfile.mkdtemp(prefix="latentlab-smoke-")
            rank_zero_info(f"Smoke run: callback outputs in {cfg.trainer.default_root_dir}")
        else:
            cfg.run.name = cfg.run.name or run_name_from_configs(cfg.get("config"))
            root = Path(cfg.run.root)
            self.run_dir = choose_run_dir(root, cfg.run.name, cfg.run.resume, self.environ)
            if cfg.run.resume:
                self._resume(cfg)
                fine_tune = False  # the weights come from last.ckpt
            cfg.trainer.default_root_dir = str(self.run_dir)
            cfg.checkpoint.dirpath = str(self.run_dir / "checkpoints")
            # last.ckpt every epoch, for resuming. A monitored ModelCheckpoint writes `last` only
            # in epochs where it saved a top-k checkpoint, so then a second, unmonitored one does.
            cfg.checkpoint.save_last = not cfg.checkpoint.get("monitor")
            loggers = cfg.trainer.get("logger")
            self._wandb_id = configure_loggers(loggers, self.run_dir, cfg.run.name, self.environ)
        if fine_tune:  # the files are found now; the resolved ones go into config.yaml
            self._init_from, cfg.run.init_from = resolve_init_from(
                cfg.run.init_from, Path(cfg.run.root)
            )

    def _resume(self, cfg: Namespace) -> None:
        """Continue ``self.run_dir`` from its last.ckpt. ``run.init_from`` is not loaded again;
        ``config.yaml`` keeps the record of the files the run started from."""
        assert self.run_dir is not None
        if self.subcommand == "fit" or cfg.get("ckpt_path") is None:
            cfg.ckpt_path = str(self.run_dir / "checkpoints" / "last.ckpt")
        if self.subcommand == "fit":
            ckpt = torch.load(cfg.ckpt_path, map_location="cpu", mmap=True, weights_only=True)
            self._resume_epoch = int(ckpt["epoch"])
        saved = self.run_dir / "config.yaml"
        if cfg.run.get("init_from") is not None and saved.is_file():
            recorded = (yaml.safe_load(saved.read_text()).get("run") or {}).get("init_from")
            if isinstance(recorded, list):
                recorded = [Namespace(**part) for part in recorded]
            cfg.run.init_from = recorded
        rank_zero_info(f"Resuming {self.run_dir} from {cfg.ckpt_path}")

    # ---------------------------------------------------------------- building
    def instantiate_classes(self) -> None:
        """Build model, data, loggers and callbacks; load ``--run.init_from`` (refused on any key
        or shape mismatch); only then create the run folder; then build the Trainer."""
        instantiators = nested_instantiators(self._active(self.config))
        self.config_init = self.parser.instantiate(self.config, instantiators=instantiators)
        built = self._active(self.config_init)
        self.datamodule, self.model = built.get("data"), built.get("model")
        if self._init_from:
            load_init_from(self.model, self._init_from)
            rank_zero_info(f"Fine-tuning from {', '.join(p.checkpoint for p in self._init_from)}")
        if self.run_dir is not None:
            self._create_run_dir()
        self.trainer = self.instantiate_trainer()

    def _create_run_dir(self) -> None:
        assert self.run_dir is not None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.environ[RUN_DIR_ENV] = str(self.run_dir)  # DDP children re-run the command: same one
        if rank_zero_only.rank != 0:
            return
        if self._resume_epoch is not None:
            trim_metrics(self.run_dir / "metrics.csv", last_epoch=self._resume_epoch)
        id_file = self.run_dir / WANDB_ID_FILE
        if self._wandb_id is not None and not id_file.is_file():
            id_file.write_text(self._wandb_id + "\n")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer with the experiment's callbacks, RNG states in checkpoints, a progress bar,
        the ``checkpoint`` ModelCheckpoint and (when that one monitors a metric) last.ckpt's."""
        built = self._active(self.config_init)
        trainer_cfg = built.get("trainer") or {}
        callbacks = _as_list(kwargs.pop("callbacks", trainer_cfg.get("callbacks")))
        callbacks.append(RNGStateCheckpoint())
        has_bar = any(isinstance(c, ProgressBar) for c in callbacks)
        if trainer_cfg.get("enable_progress_bar") is not False and not has_bar:
            callbacks.append(RichProgressBar())
        if trainer_cfg.get("enable_checkpointing") is not False:  # else the Trainer refuses one
            callbacks.append(built.checkpoint)
            if self.run_dir is not None and built.checkpoint.monitor:
                callbacks.append(last_checkpoint(self.run_dir / "checkpoints"))  # after the first
        return super().instantiate_trainer(callbacks=callbacks, **kwargs)

    # ---------------------------------------------------------------- fit, then test and predict
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
