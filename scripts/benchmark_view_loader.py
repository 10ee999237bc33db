"""How many training pairs a second loader processes make when they make the batched views.

    python scripts/benchmark_view_loader.py [--workers N] [--batch B] [--view simclr|scan]

The loader that ``data.batch_views_in=workers`` builds (semclust.data.device_views on a
decoded set in shared memory, views made in the collate, one thread per process) over 60,000
random uint8 3x32x32 images: SimCLR's two pretext views, or SCAN's two strong views of an
image and a drawn neighbour. Prints pairs per second over ``--batches`` batches, timed after
those the processes make while they start (two each, the loader's prefetch).
"""

import argparse
import time

import numpy as np
import torch

from semclust.data import make_loader
from semclust.data.batch_views import build_batch_transforms
from semclust.data.device_views import DecodedViews, ViewPlan

IMAGES = 60_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--view", choices=("simclr", "scan"), default="simclr")
    parser.add_argument("--batches", type=int, default=60)
    args = parser.parse_args()
    seeded = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (IMAGES, 3, 32, 32), dtype=torch.uint8, generator=seeded)
    views = build_batch_transforms("natural", 32, [0.5] * 3, [0.25] * 3)
    neighbors = None
    if args.view == "simclr":
        plan = ViewPlan({"view_a": ("anchor", views.pretext), "view_b": ("anchor", views.pretext)})
    else:
        plan = ViewPlan(
            {"anchor": ("anchor", views.strong), "neighbor": ("neighbor", views.strong)}
        )
        neighbors = np.random.default_rng(0).integers(0, IMAGES, (IMAGES, 20))
    dataset = DecodedViews(pixels.share_memory_(), None, plan, neighbors, views_in_collate=True)
    loader = make_loader(
        dataset, args.batch, True, args.workers, drop_last=True, seed=0, collate_fn=dataset.collate
    )
    batches = iter(loader)
    for _ in range(2 * args.workers + 1):
        next(batches)
    pairs, start = 0, time.perf_counter()
    for _ in range(args.batches):
        pairs += len(next(batches)["index"])
    seconds = time.perf_counter() - start
    print(
        f"{args.view} views, batch {args.batch}, {args.workers} loader processes: "
        f"{pairs / seconds:.0f} pairs/s ({pairs} in {seconds:.2f} s)"
    )


if __name__ == "__main__":
    main()
