"""SimCLR's training step alone, with the batch already on the device, in each precision.

    python scripts/benchmark_step.py [--device cpu|cuda] [--batch B] [--size S]
                                     [--precision 32-true bf16-mixed ...] [--steps N]

semclust's SimCLR module (the CIFAR ResNet-18, its projection head, NT-Xent) trained by a
Lightning Trainer with the precision given, as `train.py trainer.precision=P` runs it: under
bf16 the module runs channels-last (on CUDA, and on the CPU, where oneDNN's bf16
convolutions want it). One random batch of B pairs of views is made on the device once and
given to every step, so nothing but the step is timed. Prints, per precision, the median step
and the images a second it makes (each image two views, as the pretext stage counts them).
"""

import argparse
import statistics
import time
from functools import partial

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from semclust.models import build_backbone
from semclust.stages.pretext.simclr import SimCLRModule


class RepeatedBatch(Dataset):
    """The same prepared batch, ``steps`` times (the loader adds no batching)."""

    def __init__(self, batch: dict[str, torch.Tensor], steps: int) -> None:
        self.batch, self.steps = batch, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.batch


class StepTimer(pl.Callback):
    """Seconds of each training step, the device's queued work included."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def _wait(self, module: pl.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._wait(module)
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._wait(module)
        self.seconds.append(time.perf_counter() - self._started)


def time_steps(precision: str, args: argparse.Namespace) -> list[float]:
    torch.manual_seed(0)
    module = SimCLRModule(
        build_backbone("resnet18_cifar", in_channels=3),
        temperature=0.1,
        optimizer=partial(torch.optim.SGD, lr=0.4, momentum=0.9, weight_decay=1e-4),
    )
    shape = (args.batch, 3, args.size, args.size)
    batch = {
        "view_a": torch.randn(shape, device=args.device),
        "view_b": torch.randn(shape, device=args.device),
        "index": torch.arange(args.batch, device=args.device),
    }
    timer = StepTimer()
    trainer = pl.Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_steps=args.warmup + args.steps,
        benchmark=args.device == "cuda",  # as trainer=gpu
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    loader = DataLoader(RepeatedBatch(batch, args.warmup + args.steps), batch_size=None)
    trainer.fit(module, loader)
    return timer.seconds[args.warmup :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch", type=int, default=512, help="pairs of views per step")
    parser.add_argument("--size", type=int, default=32, help="image side")
    parser.add_argument("--precision", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps, after the warm-up")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    print(
        f"SimCLR step, ResNet-18 (CIFAR stem), batch {args.batch} of {args.size} px on "
        f"{args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"median of {args.steps} steps after {args.warmup}"
    )
    for precision in args.precision:
        step = statistics.median(time_steps(precision, args))
        print(f"{precision:<12} {step * 1000:9.1f} ms/step {args.batch / step:9.0f} images/s")


if __name__ == "__main__":
    main()
