"""The image-folder loader: scanning, labels, pixel conversion, bad files, errors, config."""

import hashlib
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semclust.data import build_dataset, view_transforms
from semclust.data.folder import FolderDataset, SkippedImagesWarning
from semclust.folder_recipe import complete_folder_recipe

RNG = np.random.default_rng(0)


def random_rgb(height: int = 6, width: int = 5) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def save(path: Path, image: Image.Image | np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image.save(path, **options)
    return path


def pixels(dataset: FolderDataset, index: int) -> np.ndarray:
    return np.asarray(dataset.load_image(index))


def build(path: Path, **options) -> FolderDataset:
    """Build a dataset and fail on any warning (tests of bad files catch theirs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return FolderDataset(path=str(path), **options)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` with its mode, mtime and content hash."""
    state = {}
    for entry in sorted(root.rglob("*")):
        info = entry.lstat()
        digest = hashlib.sha256(entry.read_bytes()).hexdigest() if entry.is_file() else None
        state[str(entry)] = (info.st_mode, info.st_mtime_ns, digest)
    return state


class TestScanAndLabels:
    def test_subfolders_are_classes(self, tmp_path: Path):
        arrays = {
            "cat/b.png": random_rgb(),
            "cat/a.png": random_rgb(),
            "cat/deeper/c.png": random_rgb(),
            "dog/d.PNG": random_rgb(),
        }
        for name, array in arrays.items():
            save(tmp_path / name, array)
        (tmp_path / "README.md").write_text("not an image")
        (tmp_path / "dog" / ".DS_Store").write_bytes(b"\x00\x01")
        (tmp_path / "dog" / "._d.png").write_bytes(b"AppleDouble resource fork")

        dataset = build(tmp_path)

        expected_order = ["cat/a.png", "cat/b.png", "cat/deeper/c.png", "dog/d.PNG"]
        assert dataset.paths == [str(tmp_path / name) for name in expected_order]
        assert dataset.class_names == ["cat", "dog"]
        assert dataset.targets.dtype == np.int64
        assert dataset.targets.tolist() == [0, 0, 0, 1]
        assert dataset.skipped == []
        for index, name in enumerate(expected_order):
            np.testing.assert_array_equal(pixels(dataset, index), arrays[name])
        sample = dataset[3]
        assert set(sample) == {"image", "target", "index", "path"}
        assert (sample["target"], sample["index"], sample["path"]) == (1, 3, dataset.paths[3])
        assert sample["image"].mode == "RGB"

    def test_flat_folder_is_unlabeled(self, tmp_path: Path):
        for name in ("b.jpg", "a.png", "c.bmp"):
            save(tmp_path / name, random_rgb())
        dataset = build(tmp_path)
        assert [Path(p).name for p in dataset.paths] == ["a.png", "b.jpg", "c.bmp"]
        assert dataset.targets is None and dataset.class_names is None
        assert dataset[0]["target"] == -1

    def test_top_level_images_next_to_subfolders_make_it_unlabeled(self, tmp_path: Path):
        save(tmp_path / "cat" / "a.png", random_rgb())
        save(tmp_path / "stray.png", random_rgb())
        dataset = build(tmp_path)
        assert len(dataset) == 2
        assert dataset.targets is None and dataset.class_names is None

    def test_folders_without_usable_images_are_no_class(self, tmp_path: Path):
        # Fewer images than class folders: an empty folder and one holding only a damaged
        # file do not become classes, so indices stay 0..K-1 over the classes present.
        save(tmp_path / "b_bird" / "x.png", random_rgb())
        save(tmp_path / "d_dog" / "y.png", random_rgb())
        (tmp_path / "a_empty").mkdir()
        (tmp_path / "c_cat").mkdir()
        (tmp_path / "c_cat" / "broken.png").write_bytes(b"")
        with pytest.warns(SkippedImagesWarning):
            dataset = FolderDataset(path=str(tmp_path))
        assert dataset.class_names == ["b_bird", "d_dog"]
        assert dataset.targets.tolist() == [0, 1]

    def test_extensions_choose_the_files(self, tmp_path: Path):
        save(tmp_path / "a.png", random_rgb())
        save(tmp_path / "b.bmp", random_rgb())
        dataset = build(tmp_path, extensions=[".BMP"])
        assert dataset.paths == [str(tmp_path / "b.bmp")]

    def test_symlink_loop_is_visited_once(self, tmp_path: Path):
        save(tmp_path / "cat" / "a.png", random_rgb())
        (tmp_path / "cat" / "loop").symlink_to(tmp_path, target_is_directory=True)
        assert len(build(tmp_path)) == 1

    def test_splits_partition_the_folder_and_share_class_indices(self, tmp_path: Path):
        for i in range(20):
            save(tmp_path / f"class{i % 3}" / f"{i:02d}.png", random_rgb(2, 2))
        full = build(tmp_path)
        train = build(tmp_path, split="train", split_seed=1)
        test = build(tmp_path, split="test", split_seed=1)
        assert (len(train), len(test)) == (16, 4)
        assert sorted(train.paths + test.paths) == sorted(full.paths)
        label_of = dict(zip(full.paths, full.targets.tolist(), strict=True))
        for part in (train, test):
            assert part.class_names == full.class_names
            assert part.targets.tolist() == [label_of[p] for p in part.paths]
        assert build(tmp_path, split="test", split_seed=1).paths == test.paths
        assert build(tmp_path, split="test", split_seed=2).paths != test.paths

    def test_input_folder_is_left_untouched(self, tmp_path: Path):
        save(tmp_path / "cat" / "a.png", random_rgb())
        save(tmp_path / "dog" / "b.jpg", random_rgb())
        (tmp_path / "dog" / "bad.png").write_bytes(b"")
        before = snapshot(tmp_path)
        with pytest.warns(SkippedImagesWarning):
            dataset = FolderDataset(path=str(tmp_path))
        [dataset[i] for i in range(len(dataset))]
        assert snapshot(tmp_path) == before


class TestPixelConversion:
    def test_lossless_formats_decode_exactly(self, tmp_path: Path):
        array = random_rgb(7, 9)
        for name, options in [
            ("a.png", {}),
            ("b.bmp", {}),
            ("c.tif", {}),
            ("d.TIFF", {"compression": "tiff_lzw"}),
            ("e.webp", {"lossless": True}),
        ]:
            save(tmp_path / name, array, **options)
        dataset = build(tmp_path)
        assert len(dataset) == 5
        for index in range(5):
            np.testing.assert_array_equal(pixels(dataset, index), array)

    def test_grayscale_and_channels(self, tmp_path: Path):
        gray = RNG.integers(0, 256, (5, 4), dtype=np.uint8)
        save(tmp_path / "g.png", gray)
        rgb = build(tmp_path, channels=3)
        np.testing.assert_array_equal(pixels(rgb, 0), np.repeat(gray[..., None], 3, axis=2))
        one = build(tmp_path, channels=1)
        assert one.load_image(0).mode == "L"
        np.testing.assert_array_equal(pixels(one, 0), gray)

    def test_rgb_to_one_channel_is_luma(self, tmp_path: Path):
        save(tmp_path / "c.png", np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8))
        # ITU-R 601 luma, as Pillow computes it: 0.299 R + 0.587 G + 0.114 B.
        assert pixels(build(tmp_path, channels=1), 0).tolist() == [[76, 150, 29]]

    def test_palette_with_and_without_transparency(self, tmp_path: Path):
        palette = [10, 20, 30, 200, 100, 50, 0, 0, 0]
        indices = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
        plain = Image.fromarray(indices, "P")
        plain.putpalette(palette)
        save(tmp_path / "a_plain.png", plain)
        save(tmp_path / "b_transparent.png", plain, transparency=2)
        dataset = build(tmp_path)
        colours = np.array(palette, np.uint8).reshape(3, 3)
        np.testing.assert_array_equal(pixels(dataset, 0), colours[indices])
        # Index 2 is transparent: shown on the white background.
        with_white = colours.copy()
        with_white[2] = 255
        np.testing.assert_array_equal(pixels(dataset, 1), with_white[indices])

    def test_alpha_is_composited_on_white(self, tmp_path: Path):
        rgba = random_rgb(4, 4)
        alpha = np.array([[0, 64, 128, 255]] * 4, np.uint8)
        save(tmp_path / "a_rgba.png", np.dstack([rgba, alpha]))
        gray = RNG.integers(0, 256, (4, 4), dtype=np.uint8)
        save(tmp_path / "b_la.png", Image.fromarray(np.dstack([gray, alpha]), "LA"))
        dataset = build(tmp_path)
        weight = alpha[..., None] / 255.0
        expected_rgba = rgba * weight + 255 * (1 - weight)
        np.testing.assert_allclose(pixels(dataset, 0), expected_rgba, atol=1)
        assert pixels(dataset, 0)[:, 0].tolist() == [[255, 255, 255]] * 4
        expected_la = (gray * weight[..., 0] + 255 * (1 - weight[..., 0]))[..., None]
        np.testing.assert_allclose(pixels(dataset, 1), np.repeat(expected_la, 3, 2), atol=1)
        one = build(tmp_path, channels=1)
        np.testing.assert_allclose(pixels(one, 1), expected_la[..., 0], atol=1)

    def test_16_bit_images_are_scaled_by_bit_depth(self, tmp_path: Path):
        # 257 * k is exactly k in 8 bits; 65535 must give 255 (Pillow alone clips 1000 to 255).
        values = np.array([[0, 257, 257 * 100, 1000, 65535]], np.uint16)
        expected = np.rint(values / 65535 * 255).astype(np.uint8)
        assert expected.tolist() == [[0, 1, 100, 4, 255]]
        save(tmp_path / "a.png", values)  # I;16
        save(tmp_path / "b.tif", values)  # I;16
        save(tmp_path / "c.tiff", Image.fromarray(values.astype(">u2")))  # I;16B
        save(tmp_path / "d.tif", Image.fromarray(values.astype(np.int32)))  # I, 32 bits declared
        modes = [Image.open(tmp_path / n).mode for n in ("a.png", "b.tif", "c.tiff", "d.tif")]
        assert modes == ["I;16", "I;16", "I;16B", "I"]
        one = build(tmp_path, channels=1)
        for index in range(3):
            np.testing.assert_array_equal(pixels(one, index), expected)
        # A 32-bit TIFF is scaled by 2**32 - 1: these small values all become black.
        assert pixels(one, 3).max() == 0
        np.testing.assert_array_equal(
            pixels(build(tmp_path, channels=3), 0), np.repeat(expected[..., None], 3, 2)
        )

    def test_exif_orientation_is_applied(self, tmp_path: Path):
        # Left half black, right half white, 16 wide and 8 high.
        array = np.zeros((8, 16, 3), np.uint8)
        array[:, 8:] = 255
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
        save(tmp_path / "a.jpg", array, exif=exif.tobytes(), quality=95)
        save(tmp_path / "b.jpg", array, quality=95)
        dataset = build(tmp_path)
        upright, unrotated = pixels(dataset, 0), pixels(dataset, 1)
        assert unrotated.shape == (8, 16, 3)
        assert upright.shape == (16, 8, 3)
        # Turned clockwise, the left (black) half ends up on top.
        np.testing.assert_allclose(upright, np.rot90(array, k=-1), atol=8)
        assert upright[:4].mean() < 10 and upright[-4:].mean() > 245


class TestBadFiles:
    def test_broken_files_are_skipped_with_one_warning(self, tmp_path: Path):
        good = random_rgb(12, 12)
        save(tmp_path / "ok.png", good)
        save(tmp_path / "whole.jpg", random_rgb(64, 64))
        jpeg = (tmp_path / "whole.jpg").read_bytes()
        (tmp_path / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
        (tmp_path / "empty.png").write_bytes(b"")
        (tmp_path / "text.png").write_text("this is not a PNG")
        png = (tmp_path / "ok.png").read_bytes()
        (tmp_path / "cut.png").write_bytes(png[: len(png) - 40])
        (tmp_path / "notes.txt").write_text("ignored: no image extension")

        with pytest.warns(SkippedImagesWarning) as caught:
            dataset = FolderDataset(path=str(tmp_path))

        assert len(caught) == 1
        assert [Path(p).name for p in dataset.paths] == ["ok.png", "whole.jpg"]
        np.testing.assert_array_equal(pixels(dataset, 0), good)
        reasons = {Path(path).name: reason for path, reason in dataset.skipped}
        assert set(reasons) == {"truncated.jpg", "empty.png", "text.png", "cut.png"}
        assert reasons["empty.png"] == "empty file (0 bytes)"
        assert reasons["text.png"].startswith("not an image")
        assert "truncated" in reasons["truncated.jpg"]
        assert reasons["cut.png"].startswith("corrupt or truncated")
        message = str(caught[0].message)
        assert message.startswith(f"skipped 4 unusable image file(s) in {tmp_path}:")
        for path, reason in dataset.skipped:
            assert f"{path}: {reason}" in message
        assert "notes.txt" not in message

    def test_unreadable_file_is_skipped(self, tmp_path: Path, unreadable):
        save(tmp_path / "ok.png", random_rgb())
        locked = save(tmp_path / "locked.png", random_rgb())
        unreadable(locked)
        with pytest.warns(SkippedImagesWarning, match="locked.png: permission denied"):
            dataset = FolderDataset(path=str(tmp_path))
        assert dataset.skipped == [(str(locked), "permission denied")]
        assert len(dataset) == 1

    def test_folder_without_usable_images_fails_and_counts_skips(self, tmp_path: Path):
        (tmp_path / "a.png").write_bytes(b"")
        (tmp_path / "b.jpg").write_text("nope")
        with (
            pytest.warns(SkippedImagesWarning),
            pytest.raises(
                ValueError, match=f"no usable images in {re.escape(str(tmp_path))}.*2 skipped"
            ),
        ):
            FolderDataset(path=str(tmp_path))

    def test_folder_without_image_files_fails(self, tmp_path: Path):
        (tmp_path / "README.md").write_text("hi")
        with pytest.raises(
            ValueError, match=f"no usable images in {re.escape(str(tmp_path))}: found 0"
        ):
            build(tmp_path)

    def test_missing_path_fails(self, tmp_path: Path):
        missing = tmp_path / "nowhere"
        with pytest.raises(
            FileNotFoundError, match=f"image folder {re.escape(str(missing))} does not exist"
        ):
            FolderDataset(path=str(missing))

    def test_file_instead_of_folder_fails(self, tmp_path: Path):
        file = save(tmp_path / "one.png", random_rgb())
        with pytest.raises(ValueError, match=f"{re.escape(str(file))} is a file"):
            FolderDataset(path=str(file))

    def test_bad_arguments_fail(self, tmp_path: Path):
        save(tmp_path / "a.png", random_rgb())
        with pytest.raises(ValueError, match="needs path"):
            FolderDataset("all")
        with pytest.raises(ValueError, match="channels must be 1 or 3"):
            FolderDataset(path=str(tmp_path), channels=4)
        with pytest.raises(ValueError, match="unknown split 'val'"):
            FolderDataset("val", path=str(tmp_path))

    def test_repeated_builds_see_a_fixed_file(self, tmp_path: Path):
        save(tmp_path / "a.png", random_rgb())
        broken = tmp_path / "b.png"
        broken.write_text("broken")
        with pytest.warns(SkippedImagesWarning):
            assert len(FolderDataset(path=str(tmp_path))) == 1
        save(broken, random_rgb())
        os.utime(broken, ns=(0, 10**9))  # a different mtime even on coarse clocks
        assert len(build(tmp_path)) == 2

    def test_the_same_skips_are_warned_of_once(self, tmp_path: Path):
        save(tmp_path / "a.png", random_rgb())
        (tmp_path / "b.png").write_text("broken")
        with pytest.warns(SkippedImagesWarning, match="b.png"):
            FolderDataset(path=str(tmp_path))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every stage builds it again: no second warning
            assert FolderDataset("test", path=str(tmp_path)).skipped
        (tmp_path / "c.png").write_text("broken too")
        with pytest.warns(SkippedImagesWarning, match="skipped 2 unusable") as caught:
            FolderDataset(path=str(tmp_path))
        assert len(caught) == 1


def test_config_builds_the_folder(compose_config, tmp_path: Path):
    for i in range(4):
        save(tmp_path / "images" / f"{'ab'[i % 2]}" / f"{i}.png", random_rgb(40, 30))
    overrides = ["data=folder", f"data.path={tmp_path / 'images'}", "data.num_clusters=2"]
    cfg = compose_config("train", overrides)
    complete_folder_recipe(cfg, overrides)  # as train() does: colour images, natural recipe
    train, val = build_dataset(cfg.data, "train"), build_dataset(cfg.data, "val")
    assert len(train) == len(val) == 4
    assert train.class_names == ["a", "b"]
    image = view_transforms(cfg.data).eval(train[0]["image"])
    assert tuple(image.shape) == (3, 32, 32)
