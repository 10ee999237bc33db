"""Checks of the composed training config, run before any stage starts.

:func:`check_config` walks a table of ``(path, predicate, description)`` rules and raises a
:class:`ConfigError` whose one-line message names the option as it is typed on the command
line, the allowed values and the value given: ``pretext.epochs must be an integer >= 1, got
-1``. Options a config does not have (``pretext=pretrained`` has no ``pretext.epochs``) are
skipped, and a value whose interpolation fails is left to the code that reads it; the check
resolves nothing else. Unknown stage names are the pipeline's to report.
"""

import math
from collections.abc import Callable, Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from semclust.clustering.settings import (
    CRITERIA,
    METHODS,
    REDUCTIONS,
    SCORE_SPACES,
    SELECTION_CRITERIA,
    check_method_params,
)

#: Whether a value is allowed, and the allowed values in words ("an integer >= 1").
Check = tuple[Callable[[Any], bool], str]
Rule = tuple[str, Callable[[Any], bool], str]

_ABSENT = object()
_MAX_SEED = 2**31 - 1  # Lightning seeds numpy (uint32) with seed + a stage offset < 2e6


class ConfigError(ValueError):
    """An option of the training config holds a value it cannot take."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def integer(low: int, high: int | None = None) -> Check:
    words = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    return (lambda v: _is_int(v) and v >= low and (high is None or v <= high)), words


def number(
    low: float, high: float | None = None, *, open_low: bool = False, open_high: bool = False
) -> Check:
    """A finite number from ``low`` (to ``high``); the ends are included unless open."""

    def ok(v: Any) -> bool:
        if not _is_number(v) or v < low or (open_low and v == low):
            return False
        return high is None or v < high or (v == high and not open_high)

    if high is None:
        return ok, f"a number {'>' if open_low else '>='} {low}"
    brackets = ("(" if open_low else "[", ")" if open_high else "]")
    return ok, f"a number in {brackets[0]}{low}, {high}{brackets[1]}"


def one_of(*choices: str) -> Check:
    return (lambda v: isinstance(v, str) and v in choices), f"one of {', '.join(choices)}"


def either(value: Any, check: Check) -> Check:
    """``value`` itself (null, 'auto') or what ``check`` allows."""
    shown = "null" if value is None else repr(value)
    words = f"{shown}, {check[1]}" if " or " in check[1] else f"{shown} or {check[1]}"
    return (lambda v: (type(v) is type(value) and v == value) or check[0](v)), words


BOOL: Check = (lambda v: isinstance(v, bool)), "true or false"
POSITIVE_INT = integer(1)
POSITIVE = number(0, open_low=True)
NON_NEGATIVE = number(0)
FRACTION = number(0, 1)
STAGE_GROUPS = ("pretext", "scan", "selflabel")

BOOLEANS = ("resume", "overwrite", "report", "data.options.download", "data.options.verify")
STAGE_OPTIONS: list[tuple[str, Check]] = [
    *((key, POSITIVE_INT) for key in ("epochs", "batch_size", "val_every_n_epochs")),
    *((key, BOOL) for key in ("fine_tune_backbone", "update_backbone", "cached_features")),
    ("optimizer.lr", POSITIVE),
    *((key, NON_NEGATIVE) for key in ("optimizer.weight_decay", "optimizer.momentum")),
    ("scheduler.eta_min", NON_NEGATIVE),
]

RULES: list[Rule] = [
    ("seed", *integer(0, _MAX_SEED)),
    ("stages", (lambda v: isinstance(v, ListConfig)), "a list of stage names, e.g. [scan]"),
    *((key, *BOOL) for key in BOOLEANS),
    # 0 writes last.ckpt after every batch (the crash tests do).
    ("checkpoint_every_minutes", *either(None, NON_NEGATIVE)),
    ("stop_after_minutes", *either(None, NON_NEGATIVE)),
    ("rotation_invariance.enabled", *BOOL),
    ("rotation_invariance.angles", *POSITIVE_INT),
    *((f"rotation_invariance.schedule_factors.{stage}", *POSITIVE) for stage in STAGE_GROUPS),
    ("data.num_clusters", *either("auto", integer(2))),
    ("data.channels", *either("auto", POSITIVE_INT)),
    ("data.image_size", *either("auto", POSITIVE_INT)),
    ("data.eval_batch_size", *POSITIVE_INT),
    ("data.num_workers", *either("auto", integer(0))),
    ("data.input_path", *one_of("auto", "batched", "per_image")),
    ("data.batch_views_in", *one_of("auto", "device", "workers")),
    ("data.batched_max_gib", *POSITIVE),
    *((f"data.schedule.{stage}_steps", *either(None, POSITIVE_INT)) for stage in STAGE_GROUPS),
    ("data.augment.rotation", *either("auto", NON_NEGATIVE)),
    ("data.augment.crop_scale_min", *either("auto", number(0, 1, open_low=True))),
    ("backbone.width", *POSITIVE_INT),
    ("backbone.feature_dim", *POSITIVE_INT),
    ("backbone.spatial", *POSITIVE_INT),
    ("backbone.image_size", *either(None, POSITIVE_INT)),
    *((f"{group}.{key}", *check) for group in STAGE_GROUPS for key, check in STAGE_OPTIONS),
    ("pretext.temperature", *POSITIVE),
    ("pretext.gradient_clip_val", *either(None, POSITIVE)),
    ("pretext.projection_hidden_dim", *POSITIVE_INT),
    ("pretext.projection_dim", *POSITIVE_INT),
    ("pretext.augmentation", *one_of("weak", "eval", "strong", "pretext")),
    ("pretext.loss", *one_of("mse", "l1", "perceptual")),
    ("pretext.perceptual.pixel_weight", *NON_NEGATIVE),
    ("pretext.decoder.width", *POSITIVE_INT),
    ("pretext.decoder.upsamplings", *integer(0)),
    ("pretext.download_weights", *BOOL),
    ("pretext.match_preprocessing", *BOOL),
    *((f"pretext.lock_{tower}", *BOOL) for tower in ("image", "text")),
    ("pretext.unlocked_image_groups", *integer(0)),
    ("pretext.unlocked_text_layers", *integer(0)),
    ("pretext.scheduler.warmup_fraction", *number(0, 1, open_high=True)),
    ("mine.num_neighbors", *POSITIVE_INT),
    ("mine.use_gpu", *either(None, BOOL)),
    ("mine.index", *one_of("exact", "ivf", "ivfpq", "hnsw", "auto")),
    ("mine.exact_max_rows", *integer(0)),
    ("mine.nprobe", *either(None, POSITIVE_INT)),
    ("mine.ef_search", *either(None, POSITIVE_INT)),
    ("mine.rerank_factor", *either(None, POSITIVE_INT)),
    ("mine.target_recall", *number(0, 1, open_low=True)),
    ("mine.recall_sample", *integer(0)),
    ("scan.num_neighbors", *either("auto", POSITIVE_INT)),
    ("scan.entropy_weight", *NON_NEGATIVE),
    ("scan.num_heads", *POSITIVE_INT),
    ("scan.augmentation", *one_of("strong", "weak", "eval")),
    # 0 takes every prediction as a pseudo-label (tests use it); 1 would take none.
    ("selflabel.threshold", *number(0, 1, open_high=True)),
    ("selflabel.class_balancing", *BOOL),
    ("selflabel.ema_decay", *either(None, number(0, 1, open_high=True))),
    ("selflabel.min_confident_fraction", *FRACTION),
    ("selflabel.min_clusters_kept_fraction", *FRACTION),
    ("selflabel.max_silhouette_drop", *either(None, number(0, 2))),
    ("classic.features", *one_of("pretext", "pixels", "hog")),
    ("classic.select_by", *one_of(*SELECTION_CRITERIA)),
    ("classic.score_space", *one_of(*SCORE_SPACES)),
    ("classic.score_sample_size", *integer(2)),
    ("choose_k.k_min", *integer(2)),
    ("choose_k.k_max", *integer(2)),
    ("choose_k.criterion", *one_of(*CRITERIA)),
    ("choose_k.sample_size", *integer(2)),
    ("choose_k.communities_resolution", *POSITIVE),
    ("choose_k.communities_min_size", *NON_NEGATIVE),
    ("choose_k.communities_repeats", *POSITIVE_INT),
    ("choose_k.communities_equal_share", *either(None, FRACTION)),
    ("trainer.num_nodes", *POSITIVE_INT),
    ("trainer.log_every_n_steps", *POSITIVE_INT),
]

#: The options of one entry of classic.reductions / classic.methods, by name.
CANDIDATE_OPTIONS: dict[str, Check] = {
    "n_components": POSITIVE_INT,
    "n_neighbors": integer(2),
    "min_dist": NON_NEGATIVE,
    "n_init": POSITIVE_INT,
    "max_samples": POSITIVE_INT,
    "max_iter": POSITIVE_INT,
    "reg_covar": NON_NEGATIVE,
    "linkage": one_of("ward", "complete", "average", "single"),
    "covariance_type": one_of("full", "tied", "diag", "spherical"),
    "min_samples": POSITIVE_INT,
    "eps": either("auto", POSITIVE),
    "eps_quantile": number(0, 1, open_low=True),
    "min_cluster_size": either("auto", integer(2)),
    "assign_labels": one_of("kmeans", "cluster_qr", "discretize"),
    "threshold": either("auto", POSITIVE),
    "threshold_quantile": number(0, 1, open_low=True),
    "branching_factor": integer(2),
    "max_subclusters": POSITIVE_INT,
}
#: Options that allow ``auto`` for just one method or reduction (it knows num_clusters).
NAMED_OPTIONS: dict[tuple[str, str], Check] = {
    ("spectral", "n_neighbors"): either("auto", integer(2)),
    ("spectral_embedding", "n_components"): either("auto", POSITIVE_INT),
}


def check_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first option of ``cfg`` that is unset (``???``)
    or out of range; return None when every checked option is fine."""
    missing = list(_missing_paths(cfg))
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} {'has' if len(missing) == 1 else 'have'} no value (??? in "
            f"the config); set {'it' if len(missing) == 1 else 'them'}, e.g. {missing[0]}=VALUE"
        )
    for path, ok, allowed in RULES:
        _check(path, _lookup(cfg, path), ok, allowed)
    if _lookup(cfg, "pretext.lock_image") is True and _lookup(
        cfg, "pretext.unlocked_image_groups"
    ) in (0, _ABSENT):
        raise ConfigError(
            "pretext.lock_image=true freezes the whole image tower, the backbone this pretext "
            "saves: give pretext.unlocked_image_groups >= 1 to train its last layer groups, "
            "or pretext.lock_image=false"
        )
    k_min, k_max = _lookup(cfg, "choose_k.k_min"), _lookup(cfg, "choose_k.k_max")
    if _ABSENT not in (k_min, k_max) and k_max < k_min:
        raise ConfigError(f"choose_k.k_max must be >= choose_k.k_min={k_min}, got {k_max}")
    for group, names in (("reductions", REDUCTIONS), ("methods", METHODS)):
        entries = _lookup(cfg, f"classic.{group}")
        for index, entry in enumerate(entries if isinstance(entries, ListConfig) else []):
            _check_candidate(f"classic.{group}[{index}]", entry, names, group == "methods")


def _check(path: str, value: Any, ok: Callable[[Any], bool], allowed: str) -> None:
    if value is not _ABSENT and not ok(value):
        raise ConfigError(f"{path} must be {allowed}, got {value!r}")


def _check_candidate(path: str, entry: Any, names: tuple[str, ...], is_method: bool) -> None:
    """One ``{name: ..., **options}`` entry of classic.reductions or classic.methods."""
    if not isinstance(entry, DictConfig):
        raise ConfigError(f"{path} must be a mapping such as {{name: {names[0]}}}, got {entry!r}")
    name = entry.get("name")
    _check(f"{path}.name", name, *one_of(*names))
    options = {key: _lookup(entry, str(key)) for key in entry if key != "name"}
    if is_method:
        try:
            check_method_params(name, options)
        except ValueError as error:
            raise ConfigError(f"{path}: {error}") from None
    for key, value in options.items():
        check = NAMED_OPTIONS.get((name, key), CANDIDATE_OPTIONS.get(key))
        if check is not None:
            _check(f"{path}.{key}", value, *check)


def _lookup(cfg: DictConfig, path: str) -> Any:
    """The value at ``path``; _ABSENT when there is none or its interpolation fails."""
    try:
        return OmegaConf.select(cfg, path, default=_ABSENT)
    except OmegaConfBaseException:
        return _ABSENT


def _missing_paths(node: DictConfig | ListConfig, prefix: str = "") -> Iterator[str]:
    """The paths of the values left ``???``, found without resolving any interpolation."""
    in_list = isinstance(node, ListConfig)
    for key in range(len(node)) if in_list else node.keys():
        path = f"{prefix}[{key}]" if in_list else f"{prefix}{'.' * bool(prefix)}{key}"
        if path == "hydra" or OmegaConf.is_interpolation(node, key):
            continue
        if OmegaConf.is_missing(node, key):
            yield path
        elif isinstance(child := node[key], DictConfig | ListConfig):
            yield from _missing_paths(child, path)
