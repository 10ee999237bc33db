"""Pairwise precision / recall / F1 and wall time of `semclust group` on edited copies.

Takes distinct CIFAR-10 JPEGs (the tarball or extracted folder given by ``--data``), upscales
them, writes 1-4 edited copies of each (every copy: rotation <= 5 degrees, crop <= 10 % per
side pair, brightness +-20 %, resize 0.5-2x, JPEG quality 30-90; all drawn from ``--seed``),
under shuffled file names, then groups the folder with every method and compares the groups
with the truth (an original and its copies form one group). imagededup's PHash and CNN run
on the same files when the package is installed. Example (the numbers in docs/BENCHMARKS.md):

    python scripts/benchmark_grouping.py --data ../shared/data/cifar10_jpg_test.tar.gz \\
        --work /tmp/group_bench --out group_benchmark.json
"""

import argparse
import csv
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from semclust.grouping.settings import METHODS


def read_sources(data: Path) -> list[tuple[str, bytes]]:
    """(name, JPEG bytes) of every image in a tarball or folder of CIFAR-10 JPEGs, sorted."""
    if data.is_dir():
        return [(str(p.relative_to(data)), p.read_bytes()) for p in sorted(data.rglob("*.jpg"))]
    with tarfile.open(data) as archive:
        members = sorted(
            (m for m in archive.getmembers() if m.isfile() and m.name.endswith(".jpg")),
            key=lambda m: m.name,
        )
        return [(m.name, archive.extractfile(m).read()) for m in members]


def edited_copy(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    """One edited copy and the JPEG quality to save it with; every edit, random strengths."""
    fill = tuple(int(v) for v in np.asarray(image).reshape(-1, 3).mean(axis=0))
    image = image.rotate(rng.uniform(-5, 5), Image.Resampling.BICUBIC, fillcolor=fill)
    width, height = image.size
    cut_w, cut_h = rng.uniform(0, 0.10) * width, rng.uniform(0, 0.10) * height
    left, top = rng.uniform(0, cut_w), rng.uniform(0, cut_h)
    image = image.crop((left, top, left + width - cut_w, top + height - cut_h))
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.2))
    factor = rng.uniform(0.5, 2.0)
    size = (max(8, round(image.width * factor)), max(8, round(image.height * factor)))
    image = image.resize(size, Image.Resampling.BICUBIC)
    return image, int(rng.integers(30, 91))


def make_folder(data: Path, work: Path, originals: int, seed: int, size: int) -> Path:
    """Write ``originals`` upscaled images and their edited copies under ``work/images``
    (shuffled names) and the truth (file -> source image) to ``work/truth.csv``."""
    images = work / "images"
    truth_path = work / "truth.csv"
    if truth_path.exists():
        with open(truth_path, newline="") as file:
            rows = list(csv.DictReader(file))
        if len({row["source"] for row in rows}) == originals:
            return truth_path
    sources = read_sources(data)
    if len(sources) < originals:
        raise ValueError(f"{data} holds {len(sources)} images, fewer than {originals}")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(sources), originals, replace=False)
    files: list[tuple[Image.Image, int, str]] = []
    for index in chosen:
        name, content = sources[index]
        original = Image.open(io.BytesIO(content)).convert("RGB")
        original = original.resize((size, size), Image.Resampling.BICUBIC)
        files.append((original, 95, name))
        for _ in range(int(rng.integers(1, 5))):
            copy, quality = edited_copy(original, rng)
            files.append((copy, quality, name))
    images.mkdir(parents=True, exist_ok=True)
    order = rng.permutation(len(files))
    with open(truth_path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["file", "source"])
        for position, (image, quality, name) in zip(order, files, strict=True):
            file_name = f"img_{position:06d}.jpg"
            image.save(images / file_name, quality=quality)
            writer.writerow([file_name, name])
    return truth_path


def cpu_now() -> float:
    """CPU seconds used so far by this process (all threads) and its finished children."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def read_truth(truth_path: Path) -> dict[str, str]:
    with open(truth_path, newline="") as file:
        return {row["file"]: row["source"] for row in csv.DictReader(file)}


def pair_scores(predicted: dict[str, object], truth: dict[str, str]) -> dict[str, float]:
    """Pairwise precision, recall and F1: over all pairs of files, "same group" against
    "copies of the same image" (from the contingency table, not by listing pairs)."""

    def pairs(counts: Counter) -> int:
        return sum(n * (n - 1) // 2 for n in counts.values())

    files = sorted(truth)
    together = pairs(Counter((predicted[f], truth[f]) for f in files))
    found, true = pairs(Counter(predicted[f] for f in files)), pairs(Counter(truth.values()))
    precision = together / found if found else 1.0
    recall = together / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def components(files: list[str], links: list[tuple[str, str]]) -> dict[str, int]:
    """Connected components of ``links`` over ``files`` (the chain rule)."""
    parent = {f: f for f in files}

    def root(f: str) -> str:
        while parent[f] != f:
            parent[f] = parent[parent[f]]
            f = parent[f]
        return f

    for a, b in links:
        parent[root(a)] = root(b)
    roots = {f: root(f) for f in files}
    numbers = {r: i for i, r in enumerate(sorted(set(roots.values())))}
    return {f: numbers[r] for f, r in roots.items()}


def read_groups(out: Path) -> dict[str, object]:
    """File name -> group from groups.csv (each outlier its own group)."""
    with open(out / "groups.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return {
        Path(r["path"]).name: (r["group"] if r["group"] != "-1" else "o" + r["path"]) for r in rows
    }


def run_semclust(images: Path, out: Path, truth: dict, method: str, threshold) -> dict:
    from semclust.grouping import GroupOptions, group_folder

    options = GroupOptions(
        method=method, threshold=threshold, overwrite=True, progress=False, report=False
    )
    started, cpu, load = time.perf_counter(), cpu_now(), os.getloadavg()[0]
    summary = group_folder(images, out, options)
    seconds = time.perf_counter() - started
    return {
        **pair_scores(read_groups(out), truth),
        "seconds": seconds,
        "cpu_seconds": cpu_now() - cpu,
        "load_before": load,
        "threshold": summary["threshold"],
        "reason": summary.get("threshold_reason", ""),
    }


def sweep(images: Path, truth: dict, method_name: str) -> dict:
    """The best F1 over thresholds (chosen with the labels: an upper bound, not a result)."""
    from semclust.data.folder import find_image_files
    from semclust.grouping import GroupOptions
    from semclust.grouping.components import component_labels
    from semclust.grouping.images import describe_paths
    from semclust.grouping.registry import build_method

    method = build_method(GroupOptions(method=method_name))
    paths, _ = find_image_files(images)
    described = describe_paths(method, paths, progress=False)
    names = [paths[row].name for row in described.rows]
    if method.step > 0.01:  # hashes: exactly the similarities they can take
        grid = (
            np.arange(int(round(0.2 / method.step)), int(round(1 / method.step)) + 1) * method.step
        )
    else:
        grid = np.round(np.arange(0.2, 1.0001, 0.01), 4)
    signatures = described.signatures
    pairs = method.candidates(signatures, float(grid[0]), 10)
    similarity = method.similarity(signatures, pairs)
    best = {"f1": -1.0}
    for threshold in grid:
        kept = pairs[similarity >= threshold - 1e-9]
        labels = component_labels(len(names), kept)
        scores = pair_scores(dict(zip(names, labels.tolist(), strict=True)), truth)
        if scores["f1"] > best["f1"]:
            best = {**scores, "threshold": float(threshold)}
    return best


def run_imagededup(images: Path, truth: dict) -> list[dict]:
    """imagededup's PHash (default distance 10) and CNN (default 0.9) on the same files:
    its duplicate lists as returned (pairs) and joined into groups (components)."""
    try:
        from imagededup.methods import CNN, PHash
    except ImportError:
        return [{"method": "imagededup", "skipped": "imagededup is not installed"}]
    results = []
    files = sorted(truth)
    for name, build, arguments in (
        ("imagededup PHash", PHash, {"max_distance_threshold": 10}),
        ("imagededup CNN", CNN, {"min_similarity_threshold": 0.9}),
    ):
        try:
            started, cpu = time.perf_counter(), cpu_now()
            found = build(verbose=False).find_duplicates(image_dir=images, **arguments)
            seconds, cpu = time.perf_counter() - started, cpu_now() - cpu
        except Exception as error:  # CNN downloads its weights; offline that fails
            results.append({"method": name, "skipped": f"{type(error).__name__}: {error}"})
            continue
        links = [(a, b) for a, others in found.items() for b in others]
        pairs_only = {frozenset(link) for link in links}
        true_pairs = sum(1 for link in pairs_only if len({truth[f] for f in link}) == 1)
        total_true = sum(n * (n - 1) // 2 for n in Counter(truth.values()).values())
        precision = true_pairs / len(pairs_only) if pairs_only else 1.0
        recall = true_pairs / total_true
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        results.append(
            {
                "method": f"{name} (pairs as returned)",
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "seconds": seconds,
                "cpu_seconds": cpu,
            }
        )
        results.append(
            {
                "method": f"{name} (joined into groups)",
                **pair_scores(components(files, links), truth),
                "seconds": seconds,
                "cpu_seconds": cpu,
            }
        )
    return results


def time_cli(images: Path, out: Path, method: str) -> dict:
    """Wall time of the whole `semclust group` command in a fresh process (start-up,
    reading, grouping, folders of links and the HTML page included)."""
    command = [sys.executable, "-m", "semclust.cli", "group", str(images), "--out", str(out)]
    command += ["--method", method, "--overwrite", "--quiet"]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = json.loads((out / "summary.json").read_text())
    return {
        "method": method,
        "images": summary["images_found"],
        "seconds": seconds,
        "cpu_seconds": cpu,
        "inner_seconds": summary["wall_time_s"],
        "load_before": load,
        "load_after": os.getloadavg()[0],
    }


def show(rows: list[dict]) -> None:
    print(
        f"{'method':44s} {'threshold':>9s} {'P':>6s} {'R':>6s} {'F1':>6s} {'time s':>7s} "
        f"{'CPU s':>7s}"
    )
    for row in rows:
        if "skipped" in row:
            print(f"{row['method']:44s} skipped: {row['skipped'][:90]}")
            continue
        threshold = f"{row['threshold']:.4f}" if "threshold" in row else ""
        print(
            f"{row['method']:44s} {threshold:>9s} {row['precision']:6.4f} {row['recall']:6.4f} "
            f"{row['f1']:6.4f} {row.get('seconds', float('nan')):7.1f} "
            f"{row.get('cpu_seconds', float('nan')):7.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CIFAR-10 JPEG tarball or folder")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder")
    parser.add_argument("--originals", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128, help="upscaled side of the originals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument(
        "--scale-images", type=int, default=10_000, help="folder size for the timing (0: none)"
    )
    parser.add_argument("--scale-methods", nargs="+", default=["phash", "dhash"])
    parser.add_argument("--out", type=Path, help="JSON file for the results")
    args = parser.parse_args()

    truth_path = make_folder(args.data, args.work / "quality", args.originals, args.seed, args.size)
    truth = read_truth(truth_path)
    images = args.work / "quality" / "images"
    print(
        f"{len(truth)} files: {args.originals} originals and {len(truth) - args.originals} copies"
    )
    rows = []
    for method in args.methods:
        if method == "cnn":
            try:
                from semclust.grouping.cnn import build_cnn_method

                build_cnn_method("resnet18", "DEFAULT")
            except Exception as error:  # pretrained weights are downloaded; offline that fails
                rows.append({"method": "cnn", "skipped": f"{type(error).__name__}: {error}"})
                continue
        for label, threshold in (("default", None), ("auto", "auto")):
            result = run_semclust(images, args.work / f"out_{method}", truth, method, threshold)
            rows.append({"method": f"semclust {method} ({label} threshold)", **result})
            show(rows[-1:])
        rows.append(
            {
                "method": f"semclust {method} (best threshold, labels)",
                **sweep(images, truth, method),
            }
        )
        show(rows[-1:])
    for row in run_imagededup(images, truth):
        rows.append(row)
        show([row])
    print()
    show(rows)
    scale = []
    if args.scale_images:
        originals = int(np.ceil(args.scale_images / 3.5))
        make_folder(args.data, args.work / "scale", originals, args.seed + 1, args.size)
        for method in args.scale_methods:
            scale.append(time_cli(args.work / "scale" / "images", args.work / "scale_out", method))
            done = scale[-1]
            print(
                f"scale: {method} on {done['images']:,} images: {done['seconds']:.1f} s wall, "
                f"{done['cpu_seconds']:.1f} s CPU (load average {done['load_before']:.2f} "
                f"before, {done['load_after']:.2f} after)"
            )
    if args.out:
        record = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "seed": args.seed,
            "originals": args.originals,
            "files": len(truth),
            "size": args.size,
            "quality": rows,
            "scale": scale,
        }
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
