"""Train cluster heads: `python train.py [experiment=...] [group.key=value ...]`.

Runs the stages pretext -> mine -> scan -> selflabel; see README.md for the overrides.
"""

import hydra
from omegaconf import DictConfig

from semclust.pipeline import train


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
