"""ROCOv2: radiology images with captions (Rückert et al., 2024), in the layout it ships in."""

import csv
from pathlib import Path

from semclust.data.folder import (
    ImageFileDataset,
    check_channels,
    check_images,
    find_image_files,
    warn_skipped,
)

SPLITS = ("train", "valid", "test")


def read_captions(csv_path: Path) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """``{ID: caption}`` in file order from a captions CSV; and duplicate IDs as skipped."""
    captions: dict[str, str] = {}
    duplicates: list[tuple[str, str]] = []
    # utf-8-sig: a byte-order mark would otherwise become part of the first column's name.
    with open(csv_path, newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        missing = {"ID", "Caption"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"{csv_path} lacks the column(s) {sorted(missing)}; expected a header 'ID,Caption'"
            )
        for row in reader:
            if row["ID"] in captions:
                duplicates.append((f"{csv_path}:{row['ID']}", "ID listed again; first kept"))
            else:
                captions[row["ID"]] = row["Caption"]
    return captions, duplicates


class ROCOv2Dataset(ImageFileDataset):
    """One split of ROCOv2: ``<root>/<split>/<ID>.jpg`` plus ``<root>/<split>_captions.csv``.

    The CSV has the columns ``ID,Caption``; an image's ID is its file name without the
    extension. Images come in the CSV's order, and ``captions[index]`` / ``ids[index]`` belong
    to image ``index``. ROCOv2 has no class labels (``targets`` is ``None``).

    Left out, listed in ``skipped`` and named in one warning (as in ``FolderDataset``): IDs
    in the CSV without an image file, image files without a caption (or with an empty one),
    a second file with an ID already seen, and files that do not decode.

    Args:
        split: ``train``, ``valid`` or ``test``.
        root: the folder holding the split folders and the caption CSVs.
        channels: 1 (grayscale) or 3 (RGB).
        verify: decode every image once up front (about 3 ms per image on one core); with
            ``False`` a damaged file only shows up as an error when it is loaded.
    """

    def __init__(
        self, split: str = "train", *, root: str, channels: int = 3, verify: bool = True
    ) -> None:
        self.channels = check_channels(channels)
        if split not in SPLITS:
            raise ValueError(f"unknown ROCOv2 split {split!r}; choose one of {list(SPLITS)}")
        root_path = Path(root).expanduser().absolute()
        image_dir, csv_path = root_path / split, root_path / f"{split}_captions.csv"
        for needed in (image_dir, csv_path):
            if not needed.exists():
                raise FileNotFoundError(
                    f"ROCOv2 {split} split: {needed} does not exist; expected "
                    f"<root>/{split}/<ID>.jpg and <root>/{split}_captions.csv under {root_path}"
                )

        captions, self.skipped = read_captions(csv_path)
        files, unlistable = find_image_files(image_dir)
        self.skipped += unlistable
        by_id: dict[str, Path] = {}
        uncaptioned: set[str] = set()  # listed with an empty caption: no pair to learn from
        for file in files:
            if file.stem in by_id:
                self.skipped.append((str(file), f"another file has the ID {file.stem}"))
            elif file.stem not in captions:
                self.skipped.append((str(file), f"no caption in {csv_path.name}"))
            elif not captions[file.stem].strip():
                self.skipped.append((str(file), f"empty caption in {csv_path.name}"))
                uncaptioned.add(file.stem)
            else:
                by_id[file.stem] = file
        for image_id in captions:
            if image_id not in by_id and image_id not in uncaptioned:
                self.skipped.append(
                    (str(image_dir / image_id), f"listed in {csv_path.name} but no image file")
                )

        listed = [by_id[image_id] for image_id in captions if image_id in by_id]
        if verify:
            listed, broken = check_images(listed, self.channels)
            self.skipped += broken
        warn_skipped(self.skipped, root_path)
        if not listed:
            raise ValueError(
                f"no usable ROCOv2 {split} images in {image_dir} ({len(self.skipped)} skipped)"
            )
        self.paths = [str(path) for path in listed]
        self.ids = [path.stem for path in listed]
        self.captions = [captions[image_id] for image_id in self.ids]
        self.targets = None
        self.class_names = None
