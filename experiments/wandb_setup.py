"""W&B for a run folder: files under ``<run>/wandb``, one W&B run per run folder, offline without
credentials.

The W&B run id is kept in ``<run>/wandb_run_id.txt``, so that a resumed run (or a DDP child process)
logs to the same W&B run; ``wandb sync <run>/wandb`` uploads an offline run later.
"""

from __future__ import annotations

import netrc
import secrets
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from jsonargparse import Namespace
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["WANDB_ID_FILE", "configure_wandb", "wandb_has_credentials"]

WANDB_ID_FILE = "wandb_run_id.txt"


def wandb_has_credentials(environ: Mapping[str, str], netrc_file: Path) -> bool:
    """True when W&B can log online: ``WANDB_API_KEY`` or an ``api.wandb.ai`` entry in netrc."""
    if environ.get("WANDB_API_KEY"):
        return True
    host = environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].rstrip("/")
    try:
        return netrc.netrc(netrc_file).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def configure_wandb(
    logger: Namespace, name: str, run_dir: Path, environ: MutableMapping[str, str]
) -> str:
    """Fill in the config of a WandbLogger for ``run_dir``; return its W&B run id.

    Sets ``save_dir`` (W&B writes ``<run>/wandb/...``, never ``<run>/config.yaml``), the display
    name ``<name>/<timestamp>``, the id (the one in ``run_dir``'s id file when there is one, else
    the configured one, ``WANDB_RUN_ID`` of a sweep agent, or a fresh one), group
    (``WANDB_RUN_GROUP`` when set, as by a pipeline for its steps, else the method), tags
    (the dataset), ``resume="allow"``, and ``offline`` when no credentials are found. Offline, it
    prints one line on how to sync later and sets ``WANDB_SILENT`` in ``environ`` (unless set)
    so that W&B does not repeat it. Nothing is written to disk: the caller writes the id file
    once the run folder exists.
    """
    args = logger.init_args
    args.save_dir = str(run_dir)
    args.name = args.get("name") or f"{name}/{run_dir.name}"
    id_file = run_dir / WANDB_ID_FILE
    if id_file.is_file():
        args.id = id_file.read_text().strip()
    else:  # no global RNG draw for a fresh id
        args.id = args.get("id") or environ.get("WANDB_RUN_ID") or secrets.token_hex(4)
    method, _, dataset = name.partition("/")
    group = environ.get("WANDB_RUN_GROUP") or method  # the steps of a pipeline share one
    defaults = {"group": group, "tags": [dataset.split("_")[0]] if dataset else []}
    # jsonargparse resolves WandbLogger's **kwargs to wandb.init's parameters when it can
    extra = args if "group" in args else Namespace(logger.get("dict_kwargs") or {})
    for key, value in {**defaults, "resume": "allow"}.items():
        if extra.get(key) is None:
            extra[key] = value
    if extra is not args:
        logger.dict_kwargs = extra.as_dict()
    mode = environ.get("WANDB_MODE")
    if mode is None and not args.get("offline"):
        netrc_file = Path(environ.get("NETRC", Path.home() / ".netrc"))
        args.offline = not wandb_has_credentials(environ, netrc_file)
    if args.get("offline") or mode in ("offline", "dryrun"):
        # W&B's own lines offline repeat this hint in other words: one hint, ours
        environ.setdefault("WANDB_SILENT", "true")
        rank_zero_info(f'W&B offline: sync later with "wandb sync {run_dir / "wandb"}"')
    return args.id
