"""The settings of `semclust group`: one dataclass, the one source of their defaults."""

from dataclasses import dataclass

#: Every method `semclust group` knows, in the order the help lists them.
METHODS = ("phash", "dhash", "ssim", "orb", "minhash", "template", "cnn")


@dataclass
class GroupOptions:
    """How :func:`semclust.grouping.group_folder` runs (the CLI's defaults come from here)."""

    method: str = "phash"
    #: A similarity in [0, 1] (pairs at or above it are linked), ``"auto"`` (chosen from the
    #: curve of pairs found against the threshold on a sample), or None: the method's default.
    threshold: float | str | None = None
    #: Images whose signatures are held at once; larger folders are grouped batch by batch
    #: and the batches merged through one representative per group.
    batch_size: int = 20_000
    #: Candidates per image for the methods whose similarity has no exact index (ssim, orb,
    #: template) and for the ``auto`` curve: that many nearest by a cheap descriptor.
    neighbors: int = 10
    #: Images sampled from the first batch for ``threshold="auto"``.
    sample_size: int = 2_000
    #: symlink, copy or none: how groups/<n>/ and outliers/ refer to the inputs (never moved).
    link: str = "symlink"
    #: Write groups.html.
    report: bool = True
    #: Replace the outputs of an earlier run in the output folder.
    overwrite: bool = False
    #: Threads decoding images, and comparing pairs for ssim and orb (decoders, OpenCV and
    #: scikit-image's filters release the GIL).
    workers: int = 2
    #: Seed of the ``auto`` sample (nothing else is random).
    seed: int = 0
    #: cnn only: a torchvision model name (ImageNet weights, downloaded by torchvision on
    #: first use) or a semclust model (exported .safetensors, run directory or .ckpt) whose
    #: backbone features are compared.
    cnn_model: str = "resnet18"
    #: cnn with a torchvision model only: its weights name, or "none" for random weights.
    cnn_weights: str = "DEFAULT"
    #: cnn only: auto (CUDA when present), cpu, cuda, ...
    device: str = "auto"
    #: Show progress bars on stderr.
    progress: bool = True
