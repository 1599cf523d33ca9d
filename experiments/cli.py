"""latentlab's command line: LightningCLI plus run folders, resume, W&B offline and fit-then-test.

Every run writes ``<run.root>/<run.name>/<timestamp>/`` with the resolved ``config.yaml``,
``checkpoints/`` (including ``last.ckpt``), ``metrics.csv`` (:mod:`experiments.loggers`) and
``wandb/`` (W&B's own files, its own ``config.yaml`` among them, kept apart from ours).
``--run.resume=true`` continues the latest run of that name from its ``last.ckpt`` and the same W&B
run (:mod:`experiments.wandb_setup`), and refuses changed model, data or optimizer settings
(:mod:`experiments.resume`). ``--run.init_from`` starts a fit from (parts of) other runs' weights,
or gives validate, test and predict the weights they evaluate (:mod:`experiments.init_from`).
``--print_config`` prints the config the run would save and stops.

    python -m experiments fit --config experiments/_base.yaml --config experiments/<m>/<d>.yaml
    python -m experiments run ...  # = fit --run.evaluate=true: fit, test, predict, one folder

The order of a command: parse; choose the run folder and fill in the config
(``before_instantiate_classes``, nothing written); build model, data, loggers and callbacks; check
and load ``--run.init_from`` into the model; build the Trainer; create the run folder; run. So a
configuration that cannot start leaves no folder behind, and a run that fails before it saved an
epoch (data errors surface in the Trainer's setup) removes the folder it made. Only public
LightningCLI hooks are overridden; ``pyproject.toml`` pins the Lightning versions they are tested
with.

Several processes (DDP) make one run: one folder, one ``config.yaml``, one ``metrics.csv``, one W&B
run. Rank zero alone creates the folder and writes its files (the Trainer says which rank a process
is, so the folder comes after it). The processes that Lightning starts on one node re-run the
command and learn the folder from rank zero through ``LATENTLAB_RUN_DIR``; processes started apart
(several nodes, or a launcher such as ``srun`` or ``torchrun``) must all be given the same
``LATENTLAB_RUN_DIR`` (``experiments/cluster/slurm_multinode.sh`` does), else the run stops with an
error that says so; a resume needs none, as every process finds the same newest run.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import Namespace
from lightning import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelSummary, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_helpers import is_overridden

from callbacks.last_checkpoint import LastCheckpoint
from callbacks.nan_guard import NaNGuard
from callbacks.progress import default_progress_bar
from callbacks.rng_state import RNGStateCheckpoint
from callbacks.run_checkpoint import RunCheckpoint
from experiments.config_errors import config_files
from experiments.console import CompactModelSummary, quiet_console, summarize_test_metrics
from experiments.cores import apply_core_budget
from experiments.errors import SetupError
from experiments.init_from import InitFrom, load_init_from, resolve_init_from
from experiments.loggers import configure_loggers, trim_metrics
from experiments.nested_modules import nested_instantiators
from experiments.resume import changed_settings, refusal_message
from experiments.run_dirs import (
    RUN_DIR_ENV,
    check_shared_run_dir,
    choose_run_dir,
    remove_run_dir,
    run_name_from_configs,
)
from experiments.wandb_setup import WANDB_ID_FILE

DESCRIPTION = (
    "latentlab: fit|validate|test|predict, or run (= fit --run.evaluate=true: fit, then test the "
    "best checkpoint, then predict). Runs go to <run.root>/<run.name>/<timestamp>/."
)


def default_precision(accelerator: Any) -> str:
    """bf16-mixed on a CUDA device that supports it, 32-true elsewhere."""
    on_cuda = str(accelerator) in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if on_cuda and torch.cuda.is_bf16_supported() else "32-true"


def started_apart(trainer: Trainer) -> str | None:
    """Why the processes of ``trainer``'s run start as separate commands, so that rank zero cannot
    tell the others its run folder (several nodes, or a cluster launcher); None when there is one
    process or rank zero starts the others (DDP on one node)."""
    if trainer.world_size == 1:
        return None
    if trainer.num_nodes > 1:
        return f"--trainer.num_nodes={trainer.num_nodes}"
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if environment is not None and environment.creates_processes_externally:
        return f"started by a launcher: Lightning's {type(environment).__name__}"
    return None


def predict_only(args: list[str]) -> bool:
    """``run.predict_only`` as ``args`` set it: the last ``--run.predict_only=`` flag, else the
    last ``--config`` file that sets it (an unreadable file is left to the CLI to report)."""
    flags = [a.partition("=")[2] for a in args if a.startswith("--run.predict_only=")]
    if flags:
        return flags[-1].strip().lower() in ("true", "1", "yes")
    value = False
    for path in config_files(args):
        try:
            config = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        run = config.get("run") if isinstance(config, dict) else None
        if isinstance(run, dict) and "predict_only" in run:
            value = bool(run["predict_only"])
    return value


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
        quiet_console()
        self.environ = os.environ if environ is None else environ
        self._print_config = False  # --print_config: print the config the run would save, exit
        self.run_dir: Path | None = None
        self._init_from: list[InitFrom] = []
        self._resume_epoch: int | None = None  # epoch of the checkpoint a resumed fit starts from
        self._wandb_id: str | None = None
        self._made_run_dir = False  # this process created run_dir (not a resume, not a DDP child)
        self._new_run_dir = False  # run_dir is a new timestamp this process chose (to be claimed)
        self._smoke_dir: Path | None = None  # a smoke run's temporary folder
        try:
            super().__init__(
                LightningModule,
                LightningDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                parser_kwargs={  # errors raise (experiments.config_errors); no option by prefix
                    "parser_mode": "omegaconf",
                    "description": DESCRIPTION,
                    "exit_on_error": False,
                    "allow_abbrev": False,
                },
                save_config_kwargs={"overwrite": True},
                auto_configure_optimizers=False,  # every module has its configure_optimizers
                args=args,
                run=run,
            )
        except BaseException:
            self._discard_unfinished_run()
            raise
        finally:
            if run and self._smoke_dir is not None:
                shutil.rmtree(self._smoke_dir, ignore_errors=True)

    def _discard_unfinished_run(self) -> None:
        """Remove the run folder of a run that failed before it saved an epoch (nothing in it can
        be resumed): its W&B run is finished first, as failed, then the folder goes."""
        if not self._made_run_dir or self.run_dir is None or not self.run_dir.exists():
            return
        if (self.run_dir / "checkpoints" / "last.ckpt").is_file():
            return  # resumable: kept
        wandb = sys.modules.get("wandb")
        if wandb is not None and wandb.run is not None:
            wandb.finish(exit_code=1)
        remove_run_dir(self.run_dir, Path(self._active(self.config).run.root))
        rank_zero_info(f"Removed {self.run_dir}: the run failed before it saved its first epoch.")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse; ``--print_config`` is taken out here and answered once the run's folder and
        loggers are filled in (:meth:`before_instantiate_classes`), so it shows what the run
        would save in its ``config.yaml``."""
        if args is None or isinstance(args, list | tuple):
            args = list(sys.argv[1:] if args is None else args)
            self._print_config = "--print_config" in args
            args = [a for a in args if a != "--print_config"]
        super().parse_arguments(parser, args)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        run = {
            "name": (str | None, None, "default: last --config relative to experiments/"),
            "root": (str, "runs", "folder of all runs"),
            "resume": (bool, False, "continue the latest run of this name from its last.ckpt"),
            "evaluate": (bool, False, "after fit: test the best (or last) checkpoint, predict"),
            "predict_only": (
                bool,
                False,
                "the experiment trains nothing: `run` predicts with the weights run.init_from "
                "loads (a stage that writes what later stages read)",
            ),
            "init_from": (
                str | list[InitFrom] | None,
                None,
                "start from a checkpoint's weights (fit: fine-tuning; validate, test, predict: "
                "the weights evaluated; latest:<name> is the last.ckpt of that name's newest "
                "run), or from parts of checkpoints: a list of {checkpoint, source: submodule "
                "there, target: submodule here}",
            ),
        }
        for key, (kind, default, text) in run.items():
            parser.add_argument(f"--run.{key}", type=kind, default=default, help=text)
        # built here and handed to the Trainer by instantiate_trainer (not a Lightning callback
        # key), which drops it when checkpointing is off and puts last.ckpt's writer after it
        parser.add_class_arguments(
            RunCheckpoint, "checkpoint", fail_untyped=False, sub_configs=True
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
        apply_core_budget(cfg.get("data"))  # threads and loader workers fit the cores
        if self.subcommand == "fit" and cfg.run.get("predict_only"):
            raise SetupError(
                "This experiment trains nothing (run.predict_only: true): run it with `python -m "
                "experiments run` (make experiment), which predicts, or with `predict`"
            )
        fine_tune = cfg.run.get("init_from") is not None  # fit: start; else: evaluate these
        if fine_tune and cfg.get("ckpt_path") is not None:
            raise ValueError("--run.init_from (the weights to start from) excludes ckpt_path")
        if cfg.trainer.get("fast_dev_run"):  # smoke run: no run folder; files callbacks write
            if cfg.trainer.get("default_root_dir") is None and not self._print_config:
                # a temporary folder, not the cwd, removed at the end of the run
                self._smoke_dir = Path(tempfile.mkdtemp(prefix="latentlab-smoke-"))
                cfg.trainer.default_root_dir = str(self._smoke_dir)
                rank_zero_info(
                    "Smoke run: files callbacks write go to a temporary folder, removed at the "
                    "end (--trainer.default_root_dir=<folder> keeps them)"
                )
        else:
            cfg.run.name = cfg.run.name or run_name_from_configs(cfg.get("config"))
            root = Path(cfg.run.root)
            self.run_dir = choose_run_dir(root, cfg.run.name, cfg.run.resume, self.environ)
            given = self.environ.get(RUN_DIR_ENV)
            self._new_run_dir = not cfg.run.resume and (not given or Path(given) != self.run_dir)
            if cfg.run.resume:
                self._resume(cfg)
                fine_tune = False  # the weights come from last.ckpt
            cfg.trainer.default_root_dir = str(self.run_dir)
            cfg.checkpoint.dirpath = str(self.run_dir / "checkpoints")
            # last.ckpt is LastCheckpoint's (instantiate_trainer): a monitored ModelCheckpoint
            # writes `last` only in epochs where it saved a top-k checkpoint, and neither kind
            # saves when training stops inside an epoch
            cfg.checkpoint.save_last = False
            loggers = cfg.trainer.get("logger")
            self._wandb_id = configure_loggers(loggers, self.run_dir, cfg.run.name, self.environ)
        if fine_tune:  # the files are found now; the resolved ones go into config.yaml
            self._init_from, cfg.run.init_from = resolve_init_from(
                cfg.run.init_from, Path(cfg.run.root)
            )
        if self._print_config:
            print(yaml.safe_dump(self.config_as_saved(), sort_keys=False), end="")
            raise SystemExit(0)

    def _resume(self, cfg: Namespace) -> None:
        """Continue ``self.run_dir`` from its last.ckpt. ``run.init_from`` is not loaded again;
        ``config.yaml`` keeps the record of the files the run started from."""
        assert self.run_dir is not None
        if self.subcommand == "fit" or cfg.get("ckpt_path") is None:
            cfg.ckpt_path = str(self.run_dir / "checkpoints" / "last.ckpt")
        saved = self.run_dir / "config.yaml"
        if self.subcommand == "fit":
            ckpt = torch.load(cfg.ckpt_path, map_location="cpu", mmap=True, weights_only=True)
            self._resume_epoch = int(ckpt["epoch"])
            self._refuse_changed_settings(saved, cfg.run.name)
        if cfg.run.get("init_from") is not None and saved.is_file():
            recorded = (yaml.safe_load(saved.read_text()).get("run") or {}).get("init_from")
            if isinstance(recorded, list):
                recorded = [Namespace(**part) for part in recorded]
            cfg.run.init_from = recorded
        rank_zero_info(f"Resuming {self.run_dir} from {cfg.ckpt_path}")

    def config_as_saved(self) -> dict[str, Any]:
        """The config of this subcommand as the run saves it in ``config.yaml``."""
        full = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        return full[self.subcommand] if self.subcommand else full

    def _refuse_changed_settings(self, saved: Path, name: str) -> None:
        """A resumed fit keeps the model, data and optimizer settings its run began with."""
        if not saved.is_file():
            raise FileNotFoundError(
                f"Cannot resume {saved.parent}: its config.yaml is missing, so the settings the "
                "run began with are unknown. Start a new run instead (without RESUME=1)."
            )
        changes = changed_settings(yaml.safe_load(saved.read_text()), self.config_as_saved())
        if changes:
            raise SetupError(refusal_message(str(saved.parent), name, changes))

    # ---------------------------------------------------------------- building
    def instantiate_classes(self) -> None:
        """Build model, data, loggers and callbacks; load ``--run.init_from`` (refused on any key
        or shape mismatch); build the Trainer (nothing written yet); only then create the run
        folder, on rank zero."""
        instantiators = nested_instantiators(self._active(self.config))
        self.config_init = self.parser.instantiate(self.config, instantiators=instantiators)
        built = self._active(self.config_init)
        self.datamodule, self.model = built.get("data"), built.get("model")
        if self._init_from:
            load_init_from(self.model, self._init_from)
            what = "Fine-tuning from" if self.subcommand in ("fit", None) else "Weights from"
            rank_zero_info(f"{what} {', '.join(p.checkpoint for p in self._init_from)}")
        self.trainer = self.instantiate_trainer()
        if self.run_dir is not None:
            self._create_run_dir()

    def _create_run_dir(self) -> None:
        """Create the run folder and its W&B id file on rank zero; the other ranks write nothing
        (processes started apart must have been given the folder: refused otherwise)."""
        assert self.run_dir is not None
        apart = started_apart(self.trainer)
        if apart and not self._active(self.config).run.resume:
            check_shared_run_dir(self.run_dir, self.environ, apart)
        self.environ[RUN_DIR_ENV] = str(self.run_dir)  # DDP children re-run the command: same one
        if self.trainer.global_rank != 0:
            return
        if self._new_run_dir:  # a new timestamp: claimed, never shared with another run
            try:
                self.run_dir.mkdir(parents=True)
            except FileExistsError:
                raise SetupError(
                    f"The run folder {self.run_dir} was created by another process after this run "
                    "chose it (two runs of one name started in the same second?); its files are "
                    "left alone. Start this run again, or give it a --run.name of its own."
                ) from None
            self._made_run_dir = True
        else:  # resumed, or given in RUN_DIR_ENV (DDP children, cluster scripts): shared
            self._made_run_dir = not self.run_dir.exists()
            self.run_dir.mkdir(parents=True, exist_ok=True)
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
        if trainer_cfg.get("enable_model_summary") is not False and not any(
            isinstance(c, ModelSummary) for c in callbacks
        ):
            callbacks.append(CompactModelSummary())
        has_bar = any(isinstance(c, ProgressBar) for c in callbacks)
        if trainer_cfg.get("enable_progress_bar") is not False and not has_bar:
            callbacks.append(default_progress_bar())  # rich on a terminal, lines in a log
        if trainer_cfg.get("enable_checkpointing") is not False:  # else the Trainer refuses one
            callbacks.append(built.checkpoint)
            if self.run_dir is not None:
                callbacks.append(LastCheckpoint(self.run_dir / "checkpoints"))  # after the first
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
                self.model, datamodule=self.datamodule, ckpt_path=ckpt, weights_only=True,
                verbose=False,
            )  # fmt: skip
            where = self.run_dir / "metrics.csv" if self.run_dir else "the loggers"
            rank_zero_info(summarize_test_metrics(self.trainer.callback_metrics, str(where)))
            ckpt = None  # predict with the tested weights and what test computed (thresholds)
        else:
            rank_zero_info("The datamodule defines no test data: skipping test.")
        predicts = is_overridden("predict_step", self.model, LightningModule)
        if predicts and is_overridden("predict_dataloader", self.datamodule, LightningDataModule):
            self.trainer.predict(
                self.model, datamodule=self.datamodule, ckpt_path=ckpt, weights_only=True,
                return_predictions=False,
            )  # fmt: skip
