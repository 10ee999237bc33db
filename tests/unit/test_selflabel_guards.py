"""When the self-labeling stage keeps SCAN's result: the label-free checks on its outcome."""

import pytest
from omegaconf import OmegaConf

from semclust.stages.selflabel import worse_than_scan


def settings(**overrides):
    values = {"min_clusters_kept_fraction": 1.0, "max_silhouette_drop": 0.05, **overrides}
    return OmegaConf.create(values)


SCAN = {"clusters_used": 10, "silhouette": 0.221}


@pytest.mark.parametrize("silhouette", [0.30, 0.221, 0.18])
def test_a_silhouette_that_rose_or_dropped_by_less_than_the_limit_keeps_self_labeling(silhouette):
    after = {"clusters_used": 10, "silhouette": silhouette}
    assert worse_than_scan(settings(), SCAN, after) is None


def test_a_silhouette_that_dropped_by_more_keeps_scan_and_says_by_how_much():
    # The CIFAR-10 run of docs/BENCHMARKS.md: 0.221 after SCAN, 0.105 after self-labeling.
    reason = worse_than_scan(settings(), SCAN, {"clusters_used": 10, "silhouette": 0.105})
    assert "silhouette" in reason and "0.221 to 0.105" in reason
    assert "selflabel.max_silhouette_drop=0.05" in reason


def test_the_silhouette_limit_is_a_setting():
    after = {"clusters_used": 10, "silhouette": 0.105}
    assert worse_than_scan(settings(max_silhouette_drop=0.2), SCAN, after) is None
    assert worse_than_scan(settings(max_silhouette_drop=None), SCAN, after) is None
    assert worse_than_scan(settings(max_silhouette_drop=0.0), SCAN, {**after, "silhouette": 0.22})


def test_no_silhouette_on_either_side_is_no_verdict():
    # label_free_scores leaves it out with fewer than two clusters used.
    assert worse_than_scan(settings(), {"clusters_used": 10}, {"clusters_used": 10}) is None
    assert worse_than_scan(settings(), SCAN, {"clusters_used": 10}) is None
    assert worse_than_scan(settings(), {}, {"clusters_used": 3, "silhouette": 0.0}) is None


def test_fewer_clusters_used_is_a_collapse_whatever_the_silhouette():
    reason = worse_than_scan(settings(), SCAN, {"clusters_used": 9, "silhouette": 0.9})
    assert "collapsed the clusters from 10 to 9" in reason
    kept_half = settings(min_clusters_kept_fraction=0.5)
    assert worse_than_scan(kept_half, SCAN, {"clusters_used": 5, "silhouette": 0.3}) is None
    assert worse_than_scan(kept_half, SCAN, {"clusters_used": 4, "silhouette": 0.3})
