"""How ``predict_folder`` runs, as a plain dataclass.

The CLI and ``configs/evaluate.yaml`` read their defaults from here; this module imports
nothing else, so ``semclust --help`` and a config check start without loading torch.
"""

from dataclasses import dataclass


@dataclass
class PredictOptions:
    """How :func:`predict_folder` runs; the one source of its defaults (the CLI's too)."""

    batch_size: int = 256
    #: DataLoader workers.
    num_workers: int = 0
    #: auto (CUDA when present), cpu, cuda, cuda:1, ...
    device: str = "auto"
    #: Images below this confidence go to low_confidence/ instead of their cluster's folder.
    threshold: float = 0.5
    #: symlink, copy or none: how clusters/<k>/ refers to the inputs (never moved).
    link: str = "symlink"
    report: bool = True
    overwrite: bool = False
    #: Let a grayscale model see colour images (converted to gray).
    convert_channels: bool = False
