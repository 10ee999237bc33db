"""Evaluate a SCAN or self-label checkpoint: `python evaluate.py ckpt=<path> [data=...]`
(a .ckpt, a stage folder, or a run directory for its final model).

Writes metrics.json and confusion_matrix.png (default: <run dir>/<stage>/evaluation/).
With `predict.input_dir=DIR predict.out=OUT` it clusters a folder instead, as
`semclust predict` does.
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from semclust.config_store import register_configs
from semclust.runlog import exit_on_error, is_user_error

register_configs()


@hydra.main(config_path="configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        # The command line's mistakes are reported before torch loads (about 8 s of startup).
        if OmegaConf.is_missing(cfg, "ckpt"):
            raise ValueError("ckpt is required: python evaluate.py ckpt=<checkpoint or model>")
        if not Path(cfg.ckpt).exists():
            raise FileNotFoundError(f"ckpt={cfg.ckpt} does not exist")
        from semclust.evaluation import evaluate

        evaluate(cfg)
    except Exception as error:
        if not is_user_error(error):
            raise  # a bug of ours: Hydra shows where
        exit_on_error(error, "evaluate.py")


if __name__ == "__main__":
    main()
