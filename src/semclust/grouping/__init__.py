"""Near-duplicate and similarity grouping of image folders: `semclust group`.

Images are linked when a similarity (perceptual hashes, SSIM, ORB matches, MinHash of
corners, template matching or network embeddings) reaches a threshold; the groups are the
connected components of those links, so a chain X~A~B~Y is one group. Candidate pairs come
from an index (FAISS on hashes, thumbnails or embeddings; MinHash LSH), so the costly
similarities are computed for about N x neighbours pairs, not N². Nothing here imports
Lightning, Hydra or the training stages, and the input folder is only read. The names
below load their module on first use, so the CLI reads the settings without loading torch.
"""

from semclust.lazy_exports import lazy_exports

#: Public name -> the submodule that defines it.
_SOURCES = {
    "METHODS": "settings",
    "GroupOptions": "settings",
    "group_folder": "folder",
}

__all__ = sorted(_SOURCES)
__getattr__ = lazy_exports(__name__, _SOURCES)
