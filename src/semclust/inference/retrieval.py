"""Nearest images to a query image, by cosine similarity of the model's embeddings (FAISS)."""

import csv
import json
from pathlib import Path

import faiss
import numpy as np

from semclust.data.folder import find_image_files
from semclust.inference.export import ExportedModel
from semclust.inference.predict import embed_paths, read_predictions
from semclust.metrics import l2_normalize

#: How many reused embeddings are computed again to prove they fit the model and the images.
SPOT_CHECKS = 3
#: Largest distance between a reused and a recomputed embedding, both scaled to unit length
#: (0.05 is cosine similarity 0.99875: far above device round-off, far below another model).
SPOT_CHECK_TOLERANCE = 0.05


def embed_query(exported: ExportedModel, query: str | Path) -> np.ndarray:
    query = Path(query)
    if not query.is_file():
        raise FileNotFoundError(f"query image {query} does not exist")
    (batch,) = list(embed_paths(exported, [query], batch_size=1, progress=False))
    if batch.errors:
        raise ValueError(f"cannot use query image {query}: {batch.errors[0][1]}")
    return batch.features


def _examples(paths: set[Path]) -> str:
    shown = sorted(paths)[:3]
    return ", ".join(str(p) for p in shown) + (", ..." if len(paths) > len(shown) else "")


def reuse_predictions(
    exported: ExportedModel, folder: Path, out_dir: str | Path
) -> tuple[list[str], np.ndarray]:
    """The paths (under ``folder``) and embeddings of an earlier ``semclust predict``, after
    proving they describe ``folder`` as it is now and come from this model.

    Refused with a ValueError when predict ran on another folder (as recorded in its
    ``summary.json``), when the image files under ``folder`` differ from the ones it listed
    (compared by path relative to each folder), or when a few embeddings computed again
    with ``exported`` do not match the stored ones (another model, or changed images).
    """
    out_dir = Path(out_dir)
    summary_file = out_dir / "summary.json"
    if not summary_file.is_file():
        raise ValueError(
            f"{out_dir} has no summary.json: not the output of a finished `semclust predict`; "
            f"run it on {folder} or leave out --embeddings"
        )
    recorded_dir = json.loads(summary_file.read_text()).get("input_dir")
    if not recorded_dir:
        raise ValueError(f"{summary_file} does not say which folder predict ran on")
    recorded = Path(recorded_dir)
    rerun = f"run `semclust predict` on {folder} or leave out --embeddings"
    # A relative record is relative to where predict ran; where that names no folder from
    # here, only the files and the spot check below can tell.
    if (recorded.is_absolute() or recorded.is_dir()) and recorded.resolve() != folder.resolve():
        raise ValueError(
            f"the embeddings in {out_dir} were made from the folder {recorded}, not from "
            f"{folder}; {rerun}"
        )
    paths, _, embeddings = read_predictions(out_dir)
    if embeddings.shape[1] != exported.feature_dim:
        raise ValueError(
            f"embeddings in {out_dir} have {embeddings.shape[1]} dimensions but "
            f"the model gives {exported.feature_dim}: they come from another model"
        )
    if len(paths) != embeddings.shape[0]:
        raise ValueError(
            f"{out_dir} lists {len(paths)} images in predictions.csv but holds "
            f"{embeddings.shape[0]} embeddings; {rerun}"
        )
    try:
        embedded = [Path(path).relative_to(recorded) for path in paths]
    except ValueError as error:
        raise ValueError(f"predictions.csv in {out_dir} lists files outside {recorded}") from error
    unreadable: set[Path] = set()
    errors_file = out_dir / "errors.csv"
    if errors_file.is_file():
        with open(errors_file, newline="", encoding="utf-8") as file:
            for row in list(csv.reader(file))[1:]:
                if row and Path(row[0]).is_relative_to(recorded):
                    unreadable.add(Path(row[0]).relative_to(recorded))
    files, _ = find_image_files(folder)
    current = {path.relative_to(folder) for path in files}
    new = current - set(embedded) - unreadable
    if new:
        raise ValueError(
            f"{len(new)} image file(s) in {folder} are not in the embeddings {out_dir} made "
            f"from {recorded} ({_examples(new)}); {rerun}"
        )
    gone = set(embedded) - current
    if gone:
        raise ValueError(
            f"{len(gone)} image(s) embedded in {out_dir} from {recorded} are no longer in "
            f"{folder} ({_examples(gone)}); {rerun}"
        )

    if not paths:
        return [], embeddings
    rows = sorted({0, len(paths) // 2, len(paths) - 1})[:SPOT_CHECKS]
    (again,) = embed_paths(exported, [folder / embedded[row] for row in rows], progress=False)
    stored = np.asarray(embeddings[rows])
    if again.errors or np.any(
        np.linalg.norm(l2_normalize(again.features) - l2_normalize(stored), axis=1)
        > SPOT_CHECK_TOLERANCE
    ):
        raise ValueError(
            f"the embeddings in {out_dir} (from {recorded}) were not made by this model from "
            f"these images in {folder}: another model, or the images changed; {rerun}"
        )
    return [str(folder / relative) for relative in embedded], embeddings


def nearest_images(
    exported: ExportedModel,
    folder: str | Path,
    query: str | Path,
    k: int = 10,
    batch_size: int = 256,
    embeddings_from: str | Path | None = None,
    progress: bool = True,
) -> list[tuple[str, float]]:
    """The ``k`` images under ``folder`` most similar to ``query``, most similar first.

    ``embeddings_from`` reuses the outputs of an earlier ``semclust predict`` on the same
    folder instead of embedding it again; outputs of another folder, of other files or of
    another model are refused (:func:`reuse_predictions`). The query itself is left out of
    the answer.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist or is not a folder")
    index = faiss.IndexFlatIP(exported.feature_dim)
    if embeddings_from is not None:
        paths, embeddings = reuse_predictions(exported, folder, embeddings_from)
        for start in range(0, len(paths), 65_536):
            index.add(l2_normalize(embeddings[start : start + 65_536]))
    else:
        files, _ = find_image_files(folder)
        if not files:
            raise ValueError(f"no image files in {folder}")
        paths = []
        for batch in embed_paths(
            exported, files, batch_size, progress=progress, description="embed"
        ):
            index.add(l2_normalize(batch.features))
            paths += [str(path) for path in batch.paths]
    if not paths:
        raise ValueError(f"none of the images in {folder} could be read")
    query_path = Path(query).resolve()
    scores, rows = index.search(l2_normalize(embed_query(exported, query)), min(k + 1, len(paths)))
    found = [
        (paths[row], float(score))
        for score, row in zip(scores[0], rows[0], strict=True)
        if row >= 0 and Path(paths[row]).resolve() != query_path
    ]
    return found[:k]
