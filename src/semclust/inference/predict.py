"""Apply an exported model to a folder of new images, streaming in batches.

Outputs in ``OUT``: ``predictions.csv`` (path, cluster, confidence, one probability column per
cluster), ``embeddings.npy`` and ``probabilities.npy`` row-aligned with the CSV,
``errors.csv`` (files that could not be used), ``clusters/<cluster>/`` and
``low_confidence/`` holding symbolic links to (or copies of) the inputs, ``summary.json``
and, unless turned off, ``report.html``.

Inputs are only ever read. Rows are written as they are computed, so memory does not grow
with the number of images: embeddings and probabilities go to memory-mapped ``.npy`` files.
"""

import csv
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib.format import open_memmap
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from semclust.data.folder import find_image_files, image_problem, read_image
from semclust.inference.export import ExportedModel, load_any_model
from semclust.inference.options import PredictOptions
from semclust.models import head_logits
from semclust.output_folder import LINK_MODES, check_output_folder, place_file

#: Every file and folder predict writes; ``overwrite=True`` removes only these.
OUTPUTS = (
    "predictions.csv",
    "embeddings.npy",
    "probabilities.npy",
    "errors.csv",
    "summary.json",
    "report.html",
    "clusters",
    "low_confidence",
)


class ImagePathsDataset(Dataset):
    """Images by path, decoded as the model expects; an unreadable file yields its error
    instead of raising, so one bad file never stops a run."""

    def __init__(self, paths: list[Path], channels: int, transform: Any) -> None:
        self.paths = paths
        self.channels = channels
        self.transform = transform
        self._blank: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        try:
            image = self.transform(read_image(path, self.channels))
            error = ""
        except Exception:  # decoders raise many types on damaged files
            # The folder loader's wording, so errors.csv and skipped_files_*.csv agree.
            error = image_problem(path, self.channels) or "could not be read"
            if self._blank is None:
                size = self.transform(Image.new("L" if self.channels == 1 else "RGB", (8, 8)))
                self._blank = torch.zeros_like(size)
            image = self._blank
        return {"image": image, "index": index, "error": error}


@dataclass
class EmbeddedBatch:
    """One batch's usable rows: their paths, features and probabilities (CPU, float32)."""

    paths: list[Path]
    features: np.ndarray
    probabilities: np.ndarray
    errors: list[tuple[str, str]]


def resolve_device(device: str | None) -> torch.device:
    """``auto`` (or None) picks CUDA when present, else CPU; anything else is used as given,
    if this machine has it."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; give auto, cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this machine has no CUDA GPU")
    if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"device {device!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s)"
        )
    if chosen.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; give auto, cpu, cuda or cuda:N")
    return chosen


def embed_paths(
    exported: ExportedModel,
    paths: list[Path],
    batch_size: int = 256,
    num_workers: int = 0,
    progress: bool = True,
    description: str = "predict",
) -> Iterator[EmbeddedBatch]:
    """Features and cluster probabilities of ``paths``, batch by batch, in path order."""
    dataset = ImagePathsDataset(paths, exported.channels, exported.preprocess())
    loader = DataLoader(
        dataset,
        batch_size=max(1, batch_size),
        shuffle=False,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
    )
    device = next(exported.model.parameters()).device
    exported.model.eval()
    with tqdm(total=len(paths), desc=description, unit="img", disable=not progress) as bar:
        for batch in loader:
            ok = [i for i, error in enumerate(batch["error"]) if not error]
            errors = [
                (str(paths[int(batch["index"][i])]), batch["error"][i])
                for i in range(len(batch["error"]))
                if batch["error"][i]
            ]
            features = np.zeros((0, exported.feature_dim), np.float32)
            probabilities = np.zeros((0, exported.num_clusters), np.float32)
            if ok:
                images = batch["image"][ok].to(device, non_blocking=True)
                with torch.inference_mode():
                    feats, logits = head_logits(exported.model, images)
                features = feats.float().cpu().numpy()
                probabilities = torch.softmax(logits.float(), dim=1).cpu().numpy()
            bar.update(len(batch["error"]))
            yield EmbeddedBatch(
                [paths[int(batch["index"][i])] for i in ok], features, probabilities, errors
            )


def refuse_colour_for_grayscale(exported: ExportedModel, paths: list[Path], convert: bool) -> None:
    """Refuse colour images for a grayscale model unless conversion is asked for: its
    clusters would be meaningless, and nothing else would say so."""
    if exported.channels != 1 or convert:
        return
    for path in paths[:16]:
        try:
            with Image.open(path) as image:
                if image.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "P"):
                    rgb = np.asarray(image.convert("RGB").resize((32, 32)), dtype=np.int16)
                    if np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max() > 8:
                        raise ValueError(
                            f"the model was trained on grayscale images but {path} is in "
                            "colour; pass --convert-channels to convert the images to gray "
                            "anyway"
                        )
        except (OSError, SyntaxError):
            continue  # unreadable files are reported in errors.csv later


def _folder_name(cluster: int, names: list[str]) -> str:
    if not names:
        return f"{cluster:03d}"
    safe = "".join(c if c.isalnum() or c in "-_ ." else "_" for c in names[cluster]).strip()
    return f"{cluster:03d}_{safe}" if safe else f"{cluster:03d}"


def predict_folder(
    model: str | Path | ExportedModel,
    input_dir: str | Path,
    out_dir: str | Path,
    *,
    batch_size: int = PredictOptions.batch_size,
    num_workers: int = PredictOptions.num_workers,
    device: str | None = PredictOptions.device,
    threshold: float = PredictOptions.threshold,
    link: str = PredictOptions.link,
    report: bool = PredictOptions.report,
    overwrite: bool = PredictOptions.overwrite,
    convert_channels: bool = PredictOptions.convert_channels,
    progress: bool = True,
) -> dict[str, Any]:
    """Cluster every image under ``input_dir`` with ``model``; write the outputs to
    ``out_dir`` and return the summary (also saved as ``summary.json``)."""
    started = time.perf_counter()
    if link not in LINK_MODES:
        raise ValueError(f"link must be one of {LINK_MODES}, got {link!r}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    if not input_dir.exists():
        raise FileNotFoundError(f"input folder {input_dir} does not exist")
    if not input_dir.is_dir():
        raise ValueError(f"{input_dir} is a file; predict needs a folder of images")
    check_output_folder(
        input_dir, out_dir, overwrite, OUTPUTS, "predict", filled=("clusters", "low_confidence")
    )
    paths, unlistable = find_image_files(input_dir)
    if not paths:
        raise ValueError(f"no image files in {input_dir} (looked for common image extensions)")
    exported = model if isinstance(model, ExportedModel) else load_any_model(model)
    exported.to(resolve_device(device))
    refuse_colour_for_grayscale(exported, paths, convert_channels)

    out_dir.mkdir(parents=True, exist_ok=True)
    names, clusters = exported.cluster_names, exported.num_clusters
    cluster_dirs = [out_dir / "clusters" / _folder_name(c, names) for c in range(clusters)]
    low_dir = out_dir / "low_confidence"
    if link != "none":
        for folder in [*cluster_dirs, low_dir]:
            folder.mkdir(parents=True, exist_ok=True)

    # Sized for every file found; shrunk at the end if some were unusable.
    embeddings = open_memmap(
        out_dir / "embeddings.npy", "w+", np.float32, (len(paths), exported.feature_dim)
    )
    probabilities = open_memmap(
        out_dir / "probabilities.npy", "w+", np.float32, (len(paths), clusters)
    )
    sizes = np.zeros(clusters, np.int64)
    low_confidence, rows = 0, 0
    errors: list[tuple[str, str]] = list(unlistable)
    probability_columns = [f"p_{c}" for c in range(clusters)]
    with (
        open(out_dir / "predictions.csv", "w", newline="", encoding="utf-8") as predictions,
        open(out_dir / "errors.csv", "w", newline="", encoding="utf-8") as error_file,
    ):
        writer = csv.writer(predictions)
        writer.writerow(
            ["path", "cluster"]
            + (["cluster_name"] if names else [])
            + ["confidence", *probability_columns]
        )
        error_writer = csv.writer(error_file)
        error_writer.writerow(["path", "reason"])
        error_writer.writerows(unlistable)
        for batch in embed_paths(exported, paths, batch_size, num_workers, progress):
            error_writer.writerows(batch.errors)
            errors += batch.errors
            end = rows + len(batch.paths)
            embeddings[rows:end] = batch.features
            probabilities[rows:end] = batch.probabilities
            assigned = batch.probabilities.argmax(axis=1)
            confidence = batch.probabilities.max(axis=1)
            for offset, path in enumerate(batch.paths):
                cluster, score = int(assigned[offset]), float(confidence[offset])
                sizes[cluster] += 1
                confident = score >= threshold
                low_confidence += not confident
                writer.writerow(
                    [str(path), cluster]
                    + ([names[cluster]] if names else [])
                    + [f"{score:.6f}"]
                    + [f"{p:.6f}" for p in batch.probabilities[offset]]
                )
                if link != "none":
                    folder = cluster_dirs[cluster] if confident else low_dir
                    place_file(path, folder, path.relative_to(input_dir), rows + offset, link)
            rows = end
    embeddings.flush()
    probabilities.flush()
    del embeddings, probabilities
    if rows < len(paths):  # drop the rows reserved for unusable files
        for name in ("embeddings.npy", "probabilities.npy"):
            _truncate_rows(out_dir / name, rows)
    if rows == 0:
        raise ValueError(
            f"none of the {len(paths)} image files in {input_dir} could be read; "
            f"see {out_dir / 'errors.csv'}"
        )

    summary = {
        "model": str(model) if not isinstance(model, ExportedModel) else "in memory",
        "input_dir": str(input_dir),
        "images_found": len(paths),
        "images_used": rows,
        "errors": len(errors),
        "num_clusters": clusters,
        "cluster_names": names,
        "cluster_sizes": sizes.tolist(),
        "threshold": threshold,
        "low_confidence": low_confidence,
        "link": link,
        "device": str(resolve_device(device)),
        "wall_time_s": round(time.perf_counter() - started, 2),
    }
    if report:
        summary["report"] = str(write_prediction_report(out_dir, exported, errors))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _truncate_rows(path: Path, rows: int) -> None:
    """Rewrite an ``.npy`` file with only its first ``rows`` rows, chunk by chunk."""
    full = np.load(path, mmap_mode="r")
    temporary = path.with_name(path.name + ".tmp")
    shrunk = open_memmap(temporary, "w+", full.dtype, (rows, *full.shape[1:]))
    for start in range(0, rows, 65_536):
        stop = min(rows, start + 65_536)
        shrunk[start:stop] = full[start:stop]
    shrunk.flush()
    del shrunk, full
    os.replace(temporary, path)


def read_predictions(out_dir: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Paths, probabilities and embeddings of an earlier prediction (arrays memory-mapped)."""
    out_dir = Path(out_dir)
    with open(out_dir / "predictions.csv", newline="", encoding="utf-8") as file:
        paths = [row[0] for row in list(csv.reader(file))[1:]]
    return (
        paths,
        np.load(out_dir / "probabilities.npy", mmap_mode="r"),
        np.load(out_dir / "embeddings.npy", mmap_mode="r"),
    )


def write_prediction_report(
    out_dir: Path, exported: ExportedModel, errors: list[tuple[str, str]]
) -> Path:
    """``report.html`` for a finished prediction (prototypes, Grad-CAM, t-SNE map)."""
    from semclust.reporting import ReportData, grad_cam_for, write_report  # loads matplotlib

    paths, probabilities, embeddings = read_predictions(out_dir)
    data = ReportData(
        title=f"semclust prediction: {out_dir}",
        paths=paths,
        probabilities=probabilities,
        embeddings=embeddings,
        cluster_names=exported.cluster_names or None,
        errors=errors,
    )
    explainer, reason = grad_cam_for(exported.model, exported.preprocess())
    return write_report(
        out_dir / "report.html",
        data,
        lambda row: read_image(paths[row], exported.channels),
        explainer,
        no_heatmaps_reason=reason,
    )
