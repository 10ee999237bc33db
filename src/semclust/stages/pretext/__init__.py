"""Stage 1, pretext: learn the backbone's features without labels, or take a pretrained one.

``pretext._target_`` names the :class:`~semclust.stages.pretext.base.Pretext` that does it
(SimCLR, an autoencoder, a frozen pretrained network): one file each in this package.
"""

import hydra
from omegaconf import DictConfig

from semclust.rundir import RunDirectory
from semclust.stages.pretext.base import Pretext
from semclust.stages.registry import Stage, StageResult, register


def configured_pretext(cfg: DictConfig) -> Pretext:
    """The pretext that ``cfg.pretext._target_`` names."""
    pretext_class = hydra.utils.get_class(cfg.pretext._target_)
    if not issubclass(pretext_class, Pretext):
        raise ValueError(f"pretext._target_={cfg.pretext._target_!r} is not a semclust Pretext")
    return pretext_class()


def run_pretext(cfg: DictConfig, run: RunDirectory) -> StageResult:
    """Learn (or take) the backbone and save it as ``pretext/backbone.safetensors``."""
    return configured_pretext(cfg).run(cfg, run)


def prepare_pretext(cfg: DictConfig) -> None:
    configured_pretext(cfg).prepare(cfg)


register(
    Stage(
        "pretext",
        order=10,
        run=run_pretext,
        prepare=prepare_pretext,
        needs_num_clusters=False,
        seed_offset=0,
        consumes=(),
        # K only names the k-means clusters it logs; a new K does not retrain the backbone.
        fingerprint_ignores=("data.num_clusters",),
        reads_images=lambda cfg: configured_pretext(cfg).reads_images,
    )
)
