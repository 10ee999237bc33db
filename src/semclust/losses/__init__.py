"""Losses of the three stages, one small module each."""

from semclust.losses.ntxent import mean_cosine, nt_xent_loss
from semclust.losses.scan import ScanLossTerms, scan_loss
from semclust.losses.selflabel import confidence_cross_entropy

__all__ = ["ScanLossTerms", "confidence_cross_entropy", "mean_cosine", "nt_xent_loss", "scan_loss"]
