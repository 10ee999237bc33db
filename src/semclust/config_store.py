"""Config groups whose defaults live in code, registered as Hydra structured configs.

The classic comparison, the K sweep and folder prediction are also run without Hydra
(``semclust cluster``, ``semclust predict``), so their defaults are dataclasses in the
library, written once; ``configs/train.yaml`` and ``configs/evaluate.yaml`` pick them up from
here. Call :func:`register_configs` before composing (train.py, evaluate.py and the tests do).
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from semclust.clustering.settings import ChooseKSettings, ClassicSettings
from semclust.inference.options import PredictOptions


@dataclass
class FolderPrediction(PredictOptions):
    """``python evaluate.py ckpt=MODEL predict.input_dir=DIR predict.out=OUT``."""

    #: Set to cluster a folder of new images instead of scoring a dataset.
    input_dir: str | None = None
    out: str = "???"


def register_configs() -> None:
    """Register the groups ``classic``, ``choose_k`` and ``predict`` (option ``default``)."""
    store = ConfigStore.instance()
    store.store(group="classic", name="default", node=ClassicSettings)
    store.store(group="choose_k", name="default", node=ChooseKSettings)
    store.store(group="predict", name="default", node=FolderPrediction)
