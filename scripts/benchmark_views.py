"""Batched views against the per-image recipes: one batch of uint8 RGB images per view (512 of
32×32 unless told).

    python scripts/benchmark_views.py [--threads N] [--device cuda] [--batch B] [--size S]
                                      [--batched-only]

Prints the median time of each view over repeats (per-image: the torchvision recipe applied
image by image, as a loader worker does; batched: semclust.data.batch_views on the device,
drawing from per-sample streams as training does; queued: until the call returns, on a GPU
the host's part while the kernels still run) and, counted on a batch on the ``meta`` device,
the ops a batched view runs on the device (about one kernel launch each on a GPU, which
bounds a view there) and the host-to-device copies it would wait for.
"""

import argparse
import statistics
import time

import torch

from semclust.data.batch_views import build_batch_transforms
from semclust.data.sample_streams import SampleStreams
from semclust.data.transforms import build_transforms
from semclust.transfer import recorded_device_work


def median_seconds(function, repeats: int, device: torch.device) -> tuple[float, float]:
    """Median seconds until ``function()`` returns (the host's part: on a GPU, queueing its
    kernels) and until its work is done (the same on the CPU)."""
    queued, done = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        queued.append(time.perf_counter() - start)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        done.append(time.perf_counter() - start)
    return statistics.median(queued), statistics.median(done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--size", type=int, default=32, help="image side, stored and viewed")
    parser.add_argument(
        "--batched-only", action="store_true", help="skip the per-image recipes (slow)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    seeded = torch.Generator().manual_seed(0)
    shape = (args.batch, 3, args.size, args.size)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=seeded)
    on_device, on_meta = images.to(device), images.to("meta")
    settings = {"image_size": args.size, "mean": [0.5] * 3, "std": [0.25] * 3}
    per_image = build_transforms("natural", **settings)
    batched = build_batch_transforms("natural", **settings)
    print(
        f"torch {torch.__version__}, {args.threads} threads, batch views on {device}, "
        f"batch {args.batch} of {args.size} px"
    )
    print(
        f"{'view':8} {'per-image ms':>13} {'batched ms':>11} {'queued ms':>10} {'speed-up':>9} "
        f"{'device ops':>11} {'waits':>6}"
    )
    # As in training: every sample draws from its own stream, made anew for each batch.
    seeds = iter(range(1 << 40))
    for view in ("pretext", "weak", "strong", "eval"):
        transform = batched.get(view)

        def make(images=on_device, transform=transform):
            return transform(images, SampleStreams([next(seeds) for _ in range(len(images))]))

        make()  # warm-up
        queued, at_once = median_seconds(make, 21, device)
        one_by_one = float("nan")
        if not args.batched_only:
            one_by_one = median_seconds(
                lambda v=view: [per_image.get(v)(image) for image in images], 3, torch.device("cpu")
            )[1]
        with recorded_device_work() as work:
            make(on_meta)
        print(
            f"{view:8} {one_by_one * 1e3:13.1f} {at_once * 1e3:11.1f} {queued * 1e3:10.1f} "
            f"{one_by_one / at_once:9.1f}x {work.ops:11d} {len(work.waits):6d}"
        )


if __name__ == "__main__":
    main()
