"""Output folders of commands that read a folder of images (`semclust predict`, `group`),
and the single output files of `semclust export` and `report`.

They share two rules: the input is never written to (the output folder may not lie inside
it, nor may it lie inside the folders the command fills), and a non-empty output folder is
reused only with ``overwrite``, which removes the command's own outputs and nothing else.
Images are placed into the output as links or copies under their path relative to the input.
"""

import shutil
from collections.abc import Sequence
from pathlib import Path

#: How the output's per-cluster / per-group folders refer to the inputs (never moved):
#: :func:`place_file` links or copies them, or ``none`` writes no such folders.
LINK_MODES = ("symlink", "copy", "none")


def check_output_folder(
    input_dir: Path,
    out_dir: Path,
    overwrite: bool,
    outputs: Sequence[str],
    command: str,
    filled: Sequence[str] | None = None,
) -> None:
    """Refuse an output folder inside (or equal to) the input, or an input inside what the
    command fills: the ``filled`` subfolders, or with ``None`` the whole output folder. A
    non-empty output folder needs ``overwrite``, which removes only ``outputs``."""
    source, target = input_dir.resolve(), out_dir.resolve()
    if target == source or source in target.parents:
        raise ValueError(
            f"output folder {out_dir} is inside the input folder {input_dir}; choose one "
            f"outside it ({command} never writes into its input)"
        )
    if filled is None:
        if target in source.parents:
            raise ValueError(f"input folder {input_dir} lies inside the output folder {out_dir}")
    else:
        for managed in filled:
            folder = target / managed
            if source == folder or folder in source.parents:
                raise ValueError(
                    f"input folder {input_dir} lies inside {folder}, which {command} fills"
                )
    if target.exists() and not target.is_dir():
        raise ValueError(f"output path {out_dir} is a file, not a folder")
    if target.is_dir() and any(target.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"output folder {out_dir} is not empty; pass --overwrite to replace the "
                f"outputs of an earlier semclust {command} ({', '.join(outputs)})"
            )
        for name in outputs:
            path = target / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)  # removes the links, never what they point to
            elif path.exists() or path.is_symlink():
                path.unlink()


def place_file(source: Path, folder: Path, relative: Path, index: int, mode: str) -> None:
    """Link (``symlink``) or copy ``source`` into ``folder`` as its ``relative`` path with
    folders joined by ``__``; on a clash the name is prefixed with ``index``."""
    name = "__".join(relative.parts)
    target = folder / name
    if target.exists() or target.is_symlink():
        target = folder / f"{index}_{name}"
    if mode == "symlink":
        target.symlink_to(source.resolve())
    else:
        shutil.copy2(source, target)


def check_output_file(out: Path, source: Path, overwrite: bool, command: str) -> None:
    """Refuse an output file that is a folder, lies inside (or is) ``source``, the run or
    model the command reads, or already exists without ``overwrite``: ``export`` or
    ``report`` onto a run's manifest or weights would break the run."""
    target = out.resolve()
    if target.is_dir():
        raise ValueError(f"output {out} is a folder; give the path of a file to write")
    protected = source.resolve() if source.is_dir() else source.resolve().parent
    if target == source.resolve() or protected in target.parents:
        raise ValueError(
            f"output {out} lies inside {protected}, which semclust {command} reads; choose a "
            "path outside it"
        )
    if target.exists() and not overwrite:
        raise FileExistsError(f"output {out} exists; pass --overwrite to replace it")
