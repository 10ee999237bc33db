"""Nearest images to a query image, by cosine similarity of the model's embeddings (FAISS)."""

from pathlib import Path

import faiss
import numpy as np

from semclust.data.folder import find_image_files
from semclust.inference.export import ExportedModel
from semclust.inference.predict import embed_paths, read_predictions
from semclust.metrics import l2_normalize


def embed_query(exported: ExportedModel, query: str | Path) -> np.ndarray:
    query = Path(query)
    if not query.is_file():
        raise FileNotFoundError(f"query image {query} does not exist")
    (batch,) = list(embed_paths(exported, [query], batch_size=1, progress=False))
    if batch.errors:
        raise ValueError(f"cannot use query image {query}: {batch.errors[0][1]}")
    return batch.features


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
    folder instead of embedding it again. The query itself is left out of the answer.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist or is not a folder")
    index = faiss.IndexFlatIP(exported.feature_dim)
    if embeddings_from is not None:
        paths, _, embeddings = read_predictions(embeddings_from)
        if embeddings.shape[1] != exported.feature_dim:
            raise ValueError(
                f"embeddings in {embeddings_from} have {embeddings.shape[1]} dimensions but "
                f"the model gives {exported.feature_dim}: they come from another model"
            )
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
