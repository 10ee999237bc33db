"""Exact neighbour search and k-means in torch, for a CUDA device when FAISS has none.

The FAISS wheels on PyPI are CPU builds. On a GPU machine the exact search of 50,000 × 512
features is a handful of matrix products (milliseconds), against minutes for FAISS on the
CPU; k-means of the validation features likewise. Both run in float32 and work on any torch
device, so the CPU test suite checks them against FAISS and scikit-learn.
"""

import math

import numpy as np
import torch

#: Queries scored against the whole database at a time (a chunk × N score matrix).
QUERY_CHUNK_ROWS = 4096
#: Rows moved to the device and normalised at a time (memory-mapped features stay on disk).
UPLOAD_CHUNK_ROWS = 65536
#: Share of the free device memory the features and one score chunk may take.
DEVICE_MEMORY_SHARE = 0.5


def cuda_device() -> torch.device | None:
    """The current CUDA device, or ``None`` without one."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None


def fits_on_device(num_rows: int, dim: int, device: torch.device) -> bool:
    """Whether ``num_rows × dim`` float32 features and one score chunk fit on ``device``."""
    if device.type != "cuda":
        return True
    needed = 4 * (num_rows * dim + QUERY_CHUNK_ROWS * num_rows)
    free, _ = torch.cuda.mem_get_info(device)
    return needed <= DEVICE_MEMORY_SHARE * free


def normalized_on_device(features: np.ndarray, device: torch.device) -> torch.Tensor:
    """L2-normalised float32 copy of ``features`` (possibly memory-mapped) on ``device``."""
    out = torch.empty(features.shape, dtype=torch.float32, device=device)
    for start in range(0, features.shape[0], UPLOAD_CHUNK_ROWS):
        stop = min(start + UPLOAD_CHUNK_ROWS, features.shape[0])
        chunk = torch.from_numpy(np.ascontiguousarray(features[start:stop], dtype=np.float32))
        out[start:stop] = torch.nn.functional.normalize(chunk.to(device), dim=1, eps=1e-12)
    return out


def exact_neighbors_torch(
    features: np.ndarray,
    num_neighbors: int,
    device: torch.device,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Each of ``rows``' (default: all) ``num_neighbors`` most cosine-similar other rows.

    The row itself is excluded by its index, so exact duplicates still count as neighbours.
    Returns int64 ``(len(rows), k)``, most similar first.
    """
    database = normalized_on_device(features, device)
    rows = np.arange(len(database)) if rows is None else np.asarray(rows, dtype=np.int64)
    found = np.empty((len(rows), num_neighbors), dtype=np.int64)
    for start in range(0, len(rows), QUERY_CHUNK_ROWS):
        query_rows = torch.from_numpy(rows[start : start + QUERY_CHUNK_ROWS]).to(device)
        scores = database[query_rows] @ database.T
        scores[torch.arange(len(query_rows), device=device), query_rows] = -math.inf
        nearest = scores.topk(num_neighbors, dim=1).indices
        found[start : start + len(query_rows)] = nearest.cpu().numpy()
    return found


def kmeans_torch(
    features: np.ndarray,
    num_clusters: int,
    seed: int,
    device: torch.device,
    n_init: int = 10,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> np.ndarray:
    """k-means on L2-normalised ``features``: k-means++ seeding, ``n_init`` restarts, the
    lowest inertia kept; ``tol`` relative to the mean feature variance, as in scikit-learn.

    Centres are updated with a one-hot matrix product rather than a scatter, so a run on
    the GPU gives the same labels every time.
    """
    points = normalized_on_device(features, device)
    if not 1 <= num_clusters <= len(points):
        raise ValueError(f"cannot make {num_clusters} clusters of {len(points)} samples")
    squared_norms = (points * points).sum(dim=1)
    threshold = tol * float(points.var(dim=0).mean())
    generator = torch.Generator().manual_seed(seed)
    best_labels, best_inertia = None, math.inf
    for _ in range(n_init):
        centers = _kmeans_plus_plus(points, num_clusters, generator)
        for _ in range(max_iter):
            labels, distances = _assign(points, squared_norms, centers)
            one_hot = torch.nn.functional.one_hot(labels, num_clusters).to(points.dtype)
            counts = one_hot.sum(dim=0)
            sums = one_hot.T @ points
            # An emptied cluster keeps its centre instead of dividing by zero.
            updated = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centers)
            shift = float(((updated - centers) ** 2).sum())
            centers = updated
            if shift <= threshold:
                break
        labels, distances = _assign(points, squared_norms, centers)
        inertia = float(distances.sum())
        if inertia < best_inertia:
            best_labels, best_inertia = labels, inertia
    return best_labels.cpu().numpy()


def _assign(
    points: torch.Tensor, squared_norms: torch.Tensor, centers: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of every point and the squared distance to it."""
    distances = squared_norms[:, None] - 2 * points @ centers.T + (centers * centers).sum(dim=1)
    nearest = distances.min(dim=1)
    return nearest.indices, nearest.values.clamp_min(0)


def _kmeans_plus_plus(
    points: torch.Tensor, num_clusters: int, generator: torch.Generator
) -> torch.Tensor:
    """k-means++: each next centre drawn with probability proportional to D²."""
    first = int(torch.randint(len(points), (1,), generator=generator))
    chosen = [first]
    closest = ((points - points[first]) ** 2).sum(dim=1)
    for _ in range(1, num_clusters):
        weights = closest.clamp_min(0).double().cpu()
        if float(weights.sum()) <= 0:  # fewer distinct points than clusters
            weights = torch.ones_like(weights)
        pick = int(torch.multinomial(weights, 1, generator=generator))
        chosen.append(pick)
        closest = torch.minimum(closest, ((points - points[pick]) ** 2).sum(dim=1))
    return points[chosen].clone()
