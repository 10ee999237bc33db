"""semclust: deep image clustering the SCAN way (pretext, mining, SCAN, self-labeling)."""

__version__ = "0.1.0"
