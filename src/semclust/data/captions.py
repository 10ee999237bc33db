"""Images with captions listed in a CSV (``path,caption``): the pairs ``pretext=clip_captions``
trains CLIP on, and the images the later stages cluster."""

import csv
from pathlib import Path

from semclust.data.folder import (
    ImageFileDataset,
    check_channels,
    check_images,
    split_indices,
    warn_skipped,
)

#: The columns a captions CSV must have (others are ignored).
COLUMNS = ("path", "caption")


def read_caption_pairs(
    csv_path: Path, image_root: Path
) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """``(image file, caption)`` in file order from a ``path,caption`` CSV, relative paths
    taken from ``image_root``; and ``(path, reason)`` for each row left out: an empty
    caption, no such file, a path listed again (the first row is kept)."""
    pairs: list[tuple[Path, str]] = []
    skipped: list[tuple[str, str]] = []
    seen: set[Path] = set()
    # utf-8-sig: a byte-order mark would otherwise become part of the first column's name.
    with open(csv_path, newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        missing = [column for column in COLUMNS if column not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(
                f"{csv_path} lacks the column(s) {missing}; expected a header 'path,caption' "
                f"(found {reader.fieldnames or 'no header'})"
            )
        for row in reader:
            where = f"{csv_path.name} line {reader.line_num}"
            listed, caption = (row["path"] or "").strip(), (row["caption"] or "").strip()
            if not listed:
                skipped.append((f"{csv_path}:{reader.line_num}", "no path"))
                continue
            image = image_root / listed  # an absolute path stays as it is
            if image in seen:
                skipped.append((str(image), f"listed again in {where}; the first one kept"))
            elif not caption:
                skipped.append((str(image), f"empty caption in {where}"))
            elif not image.is_file():
                skipped.append((str(image), f"listed in {where} but no such file"))
            else:
                pairs.append((image, caption))
                seen.add(image)
    return pairs, skipped


class CaptionsDataset(ImageFileDataset):
    """The images of a captions CSV, in its row order, each with ``captions[index]``.

    The CSV has a header with the columns ``path`` and ``caption`` (others are ignored);
    relative paths are taken from ``image_root``, by default the CSV's folder. Unlabeled
    (``targets`` is ``None``).

    Left out, listed in ``skipped`` and named in one warning (as in ``FolderDataset``): rows
    with an empty caption, paths with no file, a path listed again, and files that do not
    decode. A missing CSV or column is an error naming the file.

    Args:
        split: ``all``, or ``train`` / ``test`` for a seeded 80/20 split of the rows.
        csv: the captions CSV.
        image_root: the folder relative paths start from (``None``: the CSV's folder).
        channels: 1 (grayscale) or 3 (RGB).
        verify: decode every image once up front; with ``False`` a damaged file only shows
            up as an error when it is loaded.
        split_seed: seed of the train/test split.
    """

    def __init__(
        self,
        split: str = "all",
        *,
        csv: str,
        image_root: str | None = None,
        channels: int = 3,
        verify: bool = True,
        split_seed: int = 0,
    ) -> None:
        self.channels = check_channels(channels)
        csv_path = Path(csv).expanduser().absolute()
        if not csv_path.is_file():
            raise FileNotFoundError(
                f"captions CSV {csv_path} does not exist; expected a file with the header "
                "'path,caption' (data.csv)"
            )
        root = Path(image_root).expanduser().absolute() if image_root else csv_path.parent
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} (data.image_root) does not exist")

        pairs, self.skipped = read_caption_pairs(csv_path, root)
        captions = dict(pairs)
        images = [image for image, _ in pairs]
        if verify:
            images, broken = check_images(images, self.channels)
            self.skipped += broken
        warn_skipped(self.skipped, csv_path)
        if not images:
            raise ValueError(
                f"no usable (image, caption) pairs in {csv_path} ({len(self.skipped)} rows skipped)"
            )
        chosen = split_indices(len(images), split, split_seed)
        self.paths = [str(images[i]) for i in chosen]
        self.captions = [captions[images[i]] for i in chosen]
        self.targets = None
        self.class_names = None
