"""Every grouping method by name (the names are :data:`~semclust.grouping.settings.METHODS`)."""

import importlib

from semclust.grouping.feature_methods import CornerMinHash, Orb
from semclust.grouping.methods import DHash, Method, PHash
from semclust.grouping.pixel_methods import Ssim, Template
from semclust.grouping.settings import METHODS, GroupOptions

#: The methods that need no settings.
_PLAIN = {
    "phash": PHash,
    "dhash": DHash,
    "ssim": Ssim,
    "template": Template,
    "orb": Orb,
    "minhash": CornerMinHash,
}

#: Modules a method imports only when it runs, and the package that provides each: checked
#: before any output is written, so a broken install fails in one line, not in a worker thread.
_MODULES = {
    "template": ("cv2", "opencv-python-headless"),
    "orb": ("cv2", "opencv-python-headless"),
}


def check_method_available(name: str) -> None:
    """Refuse method ``name`` when a module it needs cannot be imported here, naming it."""
    if name in _MODULES:
        module, package = _MODULES[name]
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ValueError(
                f"method {name} needs {package}, which cannot be imported here ({error}); "
                f"pip install {package}, or choose another method"
            ) from error


def build_method(options: GroupOptions) -> Method:
    """The method ``options.method`` names, built with its options (cnn loads its model)."""
    name = options.method
    if name not in METHODS:
        raise ValueError(f"unknown grouping method {name!r}; choose one of {', '.join(METHODS)}")
    if name in _PLAIN:
        return _PLAIN[name]()
    from semclust.grouping.cnn import build_cnn_method  # torchvision, loaded when needed

    return build_cnn_method(options.cnn_model, options.cnn_weights, options.device)
