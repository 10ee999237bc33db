"""Near-duplicate and similarity grouping of image folders: `semclust group`.

Images are linked when a similarity (perceptual hashes, SSIM, ORB matches, MinHash of
corners, template matching or network embeddings) reaches a threshold; the groups are the
connected components of those links, so a chain X~A~B~Y is one group. Candidate pairs come
from an index (FAISS on hashes, thumbnails or embeddings; MinHash LSH), so the costly
similarities are computed for about N x neighbours pairs, not N². Nothing here imports
Lightning, Hydra or the training stages, and the input folder is only read.
"""

from semclust.grouping.folder import group_folder
from semclust.grouping.settings import LINK_MODES, METHODS, GroupOptions

__all__ = ["LINK_MODES", "METHODS", "GroupOptions", "group_folder"]
