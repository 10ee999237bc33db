"""Clustering without deep learning: numpy, scikit-learn and FAISS only, no torch or Hydra.

:mod:`~semclust.clustering.features` checks, describes (HOG) and reduces (PCA, UMAP, LLE,
spectral embedding) feature matrices; :mod:`~semclust.clustering.methods` clusters them
(k-means, agglomerative, GMM, DBSCAN, HDBSCAN, spectral, BIRCH;
:mod:`~semclust.clustering.neighbor_graph` builds the kNN graph of the spectral ones);
:mod:`~semclust.clustering.selection` compares every (reduction, method) candidate and picks
one by label-free scores, which :mod:`~semclust.clustering.comparison_io`
writes and prints; :mod:`~semclust.clustering.choose_k` picks the number of clusters;
:mod:`~semclust.clustering.neighbors` mines nearest neighbours; :mod:`~semclust.clustering.scores`
scores a clustering of deep features; :mod:`~semclust.clustering.settings` holds the defaults
of the comparison and of the K sweep. Import the submodules themselves: this package imports
none of them, so loading one never loads the others' dependencies (FAISS, matplotlib, UMAP).
"""
