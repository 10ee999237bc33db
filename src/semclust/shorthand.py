"""``backbone=<timm model name>`` on the command line, as shorthand for
``backbone=timm backbone.model_name=<name>``.

Hydra only accepts group choices it has a config for; registering all ~1,400 timm names on
every start would cost seconds, so only the name actually asked for is registered.
"""

from collections.abc import Sequence
from pathlib import Path

from hydra.core.config_store import ConfigStore


def register_timm_backbone_shorthand(arguments: Sequence[str], config_dir: Path) -> str | None:
    """Register ``backbone/<name>`` for a ``backbone=<name>`` argument naming a timm model
    (and no config file in ``config_dir``). Returns the name registered, if any."""
    choice = next((a.split("=", 1)[1] for a in arguments if a.startswith("backbone=")), None)
    if not choice or (Path(config_dir) / "backbone" / f"{choice}.yaml").is_file():
        return None
    import timm

    if not timm.is_model(choice):
        return None  # Hydra then lists the backbone configs there are
    ConfigStore.instance().store(
        group="backbone",
        name=choice,
        node={
            "_target_": "semclust.models.build_backbone",
            "name": "timm",
            "model_name": choice,
            "in_channels": "${data.channels}",
            # pretext=pretrained switches this on when it builds the network.
            "pretrained": False,
        },
    )
    return choice
