"""The run's log file, what reaches the console, and how a failed run is reported.

Errors of the user's making (a bad value, a missing file, a folder that is not a run) are
printed as one line; their traceback goes to ``<run>/train.log`` only, for a bug report.
"""

import logging
import os
import re
import sys
import traceback
import warnings
from pathlib import Path

#: Exceptions whose message tells the user what to change; anything else is a bug of ours.
#: They include the run directory's MissingArtifactError (an OSError) and RunDirectoryError
#: (a ValueError); naming those here would load torch before a config mistake is reported.
USER_ERRORS = (ValueError, OSError)

#: Lightning's error for a Trainer option it cannot take (``trainer.devices=0``): the user's.
_MISCONFIGURATION = ("lightning_fabric.utilities.exceptions", "MisconfigurationException")

_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
_log_file: Path | None = None


def attach_log_file(path: Path) -> None:
    """Copy every log record (INFO and up) to ``path``, appended across invocations."""
    global _log_file
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == path:
            return
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(logging.INFO)
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    _log_file = path


def _unwrapped(error: BaseException) -> tuple[BaseException, str]:
    """What a config's ``_target_`` raised, and the config key Hydra names, where Hydra
    wrapped it in an InstantiationException; else ``error`` itself and no key."""
    key = ""
    while type(error).__name__ == "InstantiationException" and error.__cause__ is not None:
        found = re.search(r"full_key: (\S+)", str(error))
        key = found.group(1) if found else key
        error = error.__cause__
    return error, key


def is_user_error(error: BaseException) -> bool:
    """Whether the user must change something (see :data:`USER_ERRORS`), also when Hydra
    wrapped the error of a config's ``_target_`` (``backbone.model_name`` naming no timm
    model, ``trainer.devices=0``: Lightning's MisconfigurationException)."""
    cause, _ = _unwrapped(error)
    misconfiguration = getattr(sys.modules.get(_MISCONFIGURATION[0]), _MISCONFIGURATION[1], ())
    return isinstance(cause, (USER_ERRORS, misconfiguration))


def report_user_error(error: BaseException, program: str) -> int:
    """Print ``error`` as one line (traceback to the run's log file); the exit status."""
    where = ""
    if _log_file is not None:
        try:
            with open(_log_file, "a") as file:
                file.write("".join(traceback.format_exception(error)))
            where = f" (traceback in {_log_file})"
        except OSError:
            pass
    cause, key = _unwrapped(error)
    message = " ".join(str(cause).split()) or type(cause).__name__
    if key:
        message = f"{key}: {message}"
    print(f"{program}: error: {message}{where}", file=sys.stderr)
    return 2


def in_distributed_run() -> bool:
    """Whether this process is one of several (DDP), started or about to be."""
    distributed = sys.modules.get("torch.distributed")  # not loaded: no process group yet
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        return distributed.get_world_size() > 1
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def exit_on_error(error: BaseException, program: str) -> None:
    """Report ``error`` and end the process with a non-zero status.

    One of several DDP processes leaves at once (``os._exit``): its peers, waiting for it in
    a collective, see the connection close and fail in turn, instead of waiting for the
    collective's timeout (30 minutes) in a clean-up that needs them all.
    """
    if is_user_error(error):
        status = report_user_error(error, program)
    else:
        traceback.print_exception(error)
        status = 1
    if in_distributed_run():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def quiet_lightning() -> None:
    """Keep the console to what a user acts on."""
    # Lightning's per-trainer banners (GPU/TPU availability, cloud-logging tips) repeat for
    # every stage; warnings and errors still show.
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    # Lightning's own use of a torch API deprecated in torch 2.10+; nothing of ours.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # Frozen networks (perceptual loss, frozen backbones) stay in eval mode on purpose.
    warnings.filterwarnings(
        "ignore", message=r".*module\(s\) in eval mode at the start of training"
    )
    # A resumed stage writes into its own checkpoint folder again, as it should.
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty")
    # Our training loaders resume mid-epoch through ResumableCheckpoint, not Lightning.
    warnings.filterwarnings("ignore", message=r".*your dataloader is not resumable")
    # Small datasets end up with few batches per epoch; we log per epoch anyway.
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval")
