"""``rotation_invariance.enabled``: cluster regardless of how each image is turned in-plane.

Two changes to the run's config make it so (:func:`apply_rotation_invariance`):

- ``data.augment.rotation_invariant``: every training view (SimCLR's, SCAN's, self-labeling's)
  ends with a turn by an angle drawn from the full circle, so the pretext learns features that
  ignore the turn and SCAN's heads learn to agree across turns;
- ``backbone.rotation_pooling``: wherever the model embeds or predicts in evaluation mode
  (mining, scores, the report, ``semclust predict``, exports) its features are the mean over
  ``angles`` evenly spaced turns of the image. It is part of the backbone's saved spec, so a
  model keeps it wherever it goes.
"""

from typing import Any

from omegaconf import DictConfig, open_dict

from semclust.data.transforms import black


def apply_rotation_invariance(cfg: DictConfig) -> dict[str, Any] | None:
    """Switch the views and the backbone to rotation invariance when the config asks for it;
    what was set (for the log and the manifest), or None. Needs the final data.mean/std."""
    settings = cfg.get("rotation_invariance")
    if settings is None or not settings.get("enabled", False):
        return None
    pooling = {"angles": int(settings.angles), "fill": black(cfg.data.mean, cfg.data.std)}
    with open_dict(cfg):
        cfg.data.augment.rotation_invariant = True
        cfg.backbone.rotation_pooling = pooling
    return {
        "line": (
            "rotation_invariance: training views turned by random angles; features pooled "
            f"over {pooling['angles']} turns of {360 / pooling['angles']:g}° in evaluation"
        ),
        "rotation_pooling": pooling,
    }
