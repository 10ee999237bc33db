"""Train cluster heads: `python train.py [experiment=...] [group.key=value ...]`.

Runs the stages pretext -> mine -> scan -> selflabel; see README.md for the overrides.
"""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from semclust.budget import EXIT_OUT_OF_TIME, OutOfTime
from semclust.config_checks import check_config
from semclust.config_store import register_configs
from semclust.runlog import exit_on_error, in_distributed_run, is_user_error
from semclust.shorthand import register_timm_backbone_shorthand

register_configs()
# `backbone=vit_small_patch16_224` means backbone=timm backbone.model_name=vit_small_patch16_224
register_timm_backbone_shorthand(sys.argv[1:], Path(__file__).parent / "configs")


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        # A mistyped value is reported before torch and Lightning load (about 8 s of startup).
        check_config(cfg)
        from semclust.pipeline import train

        train(cfg, HydraConfig.get().overrides.task)
    except OutOfTime as reason:
        print(f"train.py: {reason}; run the same command again to continue", file=sys.stderr)
        sys.exit(EXIT_OUT_OF_TIME)
    except Exception as error:
        if is_user_error(error) or in_distributed_run():
            exit_on_error(error, "train.py")
        raise  # a bug of ours, in one process: Hydra shows where


if __name__ == "__main__":
    main()
