"""Images as the report shows them: display sizing, Grad-CAM overlays and PNG data URIs."""

import base64
import io
import math
from pathlib import Path, PureWindowsPath

import numpy as np
import PIL.Image

_MIN_DISPLAY = 96  # tiny images (16x16 digits) are upscaled to at least this many pixels
_MAX_DISPLAY = 160  # large images are shrunk to this, which keeps the file small


def display_size(width: int, height: int) -> tuple[int, int]:
    """The size an image of ``width`` x ``height`` is shown at, aspect ratio kept."""
    longest = max(width, height)
    if longest < _MIN_DISPLAY:
        factor = math.ceil(_MIN_DISPLAY / longest)  # whole factors keep pixels square
        return width * factor, height * factor
    if longest > _MAX_DISPLAY:
        scale = _MAX_DISPLAY / longest
        return max(1, round(width * scale)), max(1, round(height * scale))
    return width, height


def for_display(image: PIL.Image.Image) -> PIL.Image.Image:
    """The image at a visible size; tiny ones upscaled with crisp pixels."""
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    size = display_size(*image.size)
    if size == image.size:
        return image
    upscaling = size[0] > image.size[0]
    return image.resize(size, PIL.Image.NEAREST if upscaling else PIL.Image.LANCZOS)


def overlay_heatmap(image: PIL.Image.Image, cam: np.ndarray) -> PIL.Image.Image:
    """The image at display size in RGB with a Grad-CAM heatmap (values in [0, 1]) over it."""
    # Imported here: the grad-cam package is optional until a heatmap is drawn.
    from pytorch_grad_cam.utils.image import show_cam_on_image

    display = for_display(image).convert("RGB")
    mask = PIL.Image.fromarray(cam.astype(np.float32)).resize(display.size, PIL.Image.BILINEAR)
    rgb = np.asarray(display, dtype=np.float32) / 255.0
    overlay = show_cam_on_image(rgb, np.clip(np.asarray(mask), 0.0, 1.0), use_rgb=True)
    return PIL.Image.fromarray(overlay, "RGB")


def png_uri(image: PIL.Image.Image | bytes) -> str:
    """A ``data:`` URI of an image, or of PNG bytes, so the page needs no other file."""
    if isinstance(image, PIL.Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        image = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii")


def file_name(path: str) -> str:
    """The last part of a POSIX or Windows path (a report may be made on another system)."""
    return PureWindowsPath(path).name if "\\" in path else Path(path).name or path
