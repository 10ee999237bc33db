"""Build time, search time, peak memory and recall@k of the neighbour indexes (issue 14).

Synthetic features: a Gaussian mixture of ``--centres`` centres in ``--dim`` dimensions
(seeded), float32, written once per size to ``--work`` as ``.npy`` and memory-mapped by each
case. Each (size, index) case runs in a fresh process so its peak resident memory
(``ru_maxrss``, which includes the touched pages of the memory-mapped features) is its own;
the peak of its anonymous memory (``RssAnon``, without those file pages) is sampled every
0.1 s beside it. ``index_mib`` is the index's own size by its layout (rows × bytes per row +
the coarse centroids; HNSW's graph links are not counted).

Recall@k is measured on ``--recall-queries`` sampled rows against an exact reference computed
for just those rows (chunked flat scan). ``exact`` runs in full only up to ``--exact-max``
rows. When ``--max-search-queries`` is below N, search time is measured on that many
queries (a contiguous block of rows) and extrapolated linearly to N, and the output says so.
Example (the numbers in docs/BENCHMARKS.md):

    python scripts/benchmark_mining.py --sizes 100000 1000000 --out mining_benchmark.json
"""

import argparse
import json
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import faiss
import numpy as np

from semclust.clustering.faiss_indexes import build_index, normalized_rows, rows_searcher
from semclust.clustering.neighbors import (
    choose_index,
    exact_neighbors,
    recall_at_k,
    tune_search,
)

K = 20
INDEXES = ("exact", "ivf", "ivfpq", "hnsw")


def make_features(path: Path, size: int, dim: int, centres: int, seed: int) -> None:
    """Rows = centre + noise: centres ~ N(0, 1/dim) (norm ≈ 1), noise norm ≈ 0.6."""
    if path.is_file() and np.load(path, mmap_mode="r").shape == (size, dim):
        return
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=1 / np.sqrt(dim), size=(centres, dim)).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(size, dim))
    for start in range(0, size, 100_000):
        stop = min(start + 100_000, size)
        labels = rng.integers(0, centres, size=stop - start)
        noise = rng.normal(scale=0.6 / np.sqrt(dim), size=(stop - start, dim))
        out[start:stop] = means[labels] + noise.astype(np.float32)
    out.flush()
    del out


def reference(features_path: Path, ref_path: Path, queries: int, seed: int) -> dict:
    features = np.load(features_path, mmap_mode="r")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(features), size=queries, replace=False))
    start = time.perf_counter()
    found = exact_neighbors(features, rows, K)
    seconds = time.perf_counter() - start
    np.savez(ref_path, rows=rows, neighbors=found)
    return {"reference_seconds": seconds, "queries": queries}


class PeakAnonymousMemory:
    """The largest ``RssAnon`` of this process (MiB), sampled every 0.1 s in a thread."""

    def __init__(self) -> None:
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.peak_mib = max(self.peak_mib, anonymous_mib())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak_mib, anonymous_mib())


def anonymous_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def index_mib(index: faiss.Index, kind: str, size: int, dim: int) -> float | None:
    """The index's own memory by its layout: rows × bytes per row, plus IVF centroids."""
    if kind == "exact":
        return size * dim * 4 / 2**20
    if kind in ("ivf", "ivfpq"):
        per_row = index.code_size + 8  # codes (or the float32 row) and the int64 id
        return (size * per_row + index.nlist * dim * 4) / 2**20
    return None


def run_case(features_path: Path, ref_path: Path, kind: str, max_queries: int, seed: int) -> dict:
    memory = PeakAnonymousMemory()
    features = np.load(features_path, mmap_mode="r")
    size = len(features)
    start = time.perf_counter()
    index, params = build_index(features, kind, seed=seed)
    build = time.perf_counter() - start
    search = rows_searcher(index, features, kind, K)
    tune = 0.0
    if kind != "exact":
        start = time.perf_counter()
        params.update(tune_search(index, features, K, kind, 0.95, seed, search=search))
        tune = time.perf_counter() - start
    searched = min(size, max_queries)
    neighbors = np.empty((searched, K), dtype=np.int64)
    start = time.perf_counter()
    for lo in range(0, searched, 65536):
        hi = min(lo + 65536, searched)
        neighbors[lo:hi] = search(normalized_rows(features, slice(lo, hi)), np.arange(lo, hi))
    search_seconds = time.perf_counter() - start
    ref = np.load(ref_path)
    rows, expected = ref["rows"], ref["neighbors"]
    recall = recall_at_k(search(normalized_rows(features, rows), rows), expected)
    return {
        "index": kind,
        "rows": size,
        "params": params,
        "build_seconds": build,
        "tune_seconds": tune,
        "searched_queries": searched,
        "search_seconds_measured": search_seconds,
        "search_seconds": search_seconds * size / searched,
        "search_extrapolated": searched < size,
        "recall_at_20": recall,
        "index_mib": index_mib(index, kind, size, features.shape[1]),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_anonymous_mib": memory.stop(),
    }


def in_fresh_process(*args: str) -> dict:
    command = [sys.executable, __file__, "--child", *args]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--centres", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--indexes", nargs="+", default=list(INDEXES), choices=INDEXES)
    parser.add_argument("--exact-max", type=int, default=200_000)
    parser.add_argument("--recall-queries", type=int, default=1000)
    parser.add_argument("--max-search-queries", type=int, default=10**9)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mining_bench"))
    parser.add_argument("--out", type=Path, default=Path("mining_benchmark.json"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        what, features_path, ref_path, *rest = args.child
        if what == "reference":
            answer = reference(Path(features_path), Path(ref_path), int(rest[0]), int(rest[1]))
        else:
            answer = run_case(Path(features_path), Path(ref_path), what, int(rest[0]), int(rest[1]))
        print(json.dumps(answer))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": {"platform": platform.platform(), "cpus": faiss.omp_get_max_threads()},
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "k": K,
        "dim": args.dim,
        "centres": args.centres,
        "seed": args.seed,
        "sizes": {},
    }
    for size in args.sizes:
        path = args.work / f"features_{size}_{args.dim}_{args.seed}.npy"
        start = time.perf_counter()
        make_features(path, size, args.dim, args.centres, args.seed)
        ref_path = args.work / f"reference_{size}_{args.seed}.npz"
        entry = {
            "generate_seconds": time.perf_counter() - start,
            "features_mib": size * args.dim * 4 / 2**20,
            "auto_picks": choose_index(size, dim=args.dim),
            "reference": in_fresh_process(
                "reference", str(path), str(ref_path), str(args.recall_queries), str(args.seed)
            ),
            "cases": [],
        }
        results["sizes"][str(size)] = entry
        for kind in args.indexes:
            if kind == "exact" and size > args.exact_max:
                continue
            case = in_fresh_process(
                kind, str(path), str(ref_path), str(args.max_search_queries), str(args.seed)
            )
            entry["cases"].append(case)
            print(json.dumps(case), flush=True)
            args.out.write_text(json.dumps(results, indent=2))
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
