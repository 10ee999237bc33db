"""scripts/cifar100_to_folder.py on tiny archives in the official CIFAR-100 python format."""

import hashlib
import importlib.util
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semclust.data import build_dataset
from semclust.data.cifar100 import FINE_TO_SUPERCLASS, CIFAR100FormatError, read_split
from semclust.folder_recipe import as_trained, complete_folder_recipe
from semclust.inference.spec import to_plain

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cifar100_to_folder.py"
_spec = importlib.util.spec_from_file_location("cifar100_to_folder", _SCRIPT)
cifar100_to_folder = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cifar100_to_folder)

# The published CIFAR-100 class list (cs.toronto.edu/~kriz/cifar.html), spelt as the archive's
# meta spells the names; the archive numbers both lists alphabetically.
MEMBERS = {
    "aquatic_mammals": ["beaver", "dolphin", "otter", "seal", "whale"],
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "food_containers": ["bottle", "bowl", "can", "cup", "plate"],
    "fruit_and_vegetables": ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    "household_electrical_devices": ["clock", "keyboard", "lamp", "telephone", "television"],
    "household_furniture": ["bed", "chair", "couch", "table", "wardrobe"],
    "insects": ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    "large_carnivores": ["bear", "leopard", "lion", "tiger", "wolf"],
    "large_man-made_outdoor_things": ["bridge", "castle", "house", "road", "skyscraper"],
    "large_natural_outdoor_scenes": ["cloud", "forest", "mountain", "plain", "sea"],
    "large_omnivores_and_herbivores": ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    "medium_mammals": ["fox", "porcupine", "possum", "raccoon", "skunk"],
    "non-insect_invertebrates": ["crab", "lobster", "snail", "spider", "worm"],
    "people": ["baby", "boy", "girl", "man", "woman"],
    "reptiles": ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    "small_mammals": ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles_1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "vehicles_2": ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
}
SUPERCLASSES = sorted(MEMBERS)
FINE_NAMES = sorted(name for names in MEMBERS.values() for name in names)
SUPERCLASS_OF = {fine: SUPERCLASSES.index(sc) for sc, names in MEMBERS.items() for fine in names}


def pickle_file(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(content, protocol=2))  # the official files' protocol


def split_content(fine: np.ndarray, seed: int) -> tuple[dict, np.ndarray]:
    """A split pickle's dict for images of the fine classes ``fine``; and the images."""
    images = np.random.default_rng(seed).integers(0, 256, (len(fine), 32, 32, 3), dtype=np.uint8)
    content = {
        "batch_label": "training batch 1 of 1",
        "filenames": [f"{FINE_NAMES[f]}_s_{i:06d}.png" for i, f in enumerate(fine)],
        "fine_labels": fine.tolist(),
        "coarse_labels": [SUPERCLASS_OF[FINE_NAMES[f]] for f in fine],
        "data": images.transpose(0, 3, 1, 2).reshape(len(fine), 3072),  # R, then G, then B
    }
    return content, images


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, dict]:
    """``cifar-100-python/``: train has each fine class once (5 per superclass), test 2 per
    superclass; and the truth: split -> {file name: (superclass, image)}."""
    folder = tmp_path / "input" / "cifar-100-python"
    rng = np.random.default_rng(0)
    test_fine = [FINE_NAMES.index(MEMBERS[sc][i]) for sc in SUPERCLASSES for i in (0, 3)]
    truth = {}
    for seed, (split, fine) in enumerate(
        [("train", rng.permutation(100)), ("test", rng.permutation(test_fine))]
    ):
        content, images = split_content(fine, seed)
        pickle_file(folder / split, content)
        truth[split] = {
            name: (SUPERCLASSES[coarse], image)
            for name, coarse, image in zip(
                content["filenames"], content["coarse_labels"], images, strict=True
            )
        }
    meta = {"fine_label_names": FINE_NAMES, "coarse_label_names": SUPERCLASSES}
    pickle_file(folder / "meta", meta)
    return folder, truth


def make_tarball(folder: Path) -> Path:
    """``folder`` packed as the official tarball packs it: ``<name>.tar.gz`` holding ``name/``."""
    tarball = folder.parent / f"{folder.name}.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(folder, arcname=folder.name)
    return tarball


@pytest.fixture(params=["tarball", "folder"])
def source(request, archive) -> tuple[Path, dict]:
    folder, truth = archive
    return (make_tarball(folder) if request.param == "tarball" else folder), truth


def convert(*args: object) -> None:
    cifar100_to_folder.main([str(arg) for arg in args])


def refusal(*args: object) -> str:
    with pytest.raises(SystemExit) as exit_info:
        convert(*args)
    return str(exit_info.value.code)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (or ``root`` itself) -> digest of its bytes and its mtime."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() + str(p.stat().st_mtime_ns)
        for p in files
    }


def test_superclass_table_matches_the_published_class_list():
    assert list(FINE_TO_SUPERCLASS) == [SUPERCLASS_OF[name] for name in FINE_NAMES]


def test_writes_png_folders_whose_pixels_round_trip(source, tmp_path: Path, capsys):
    location, truth = source
    before = snapshot(location.parent)
    out = tmp_path / "cifar20"
    convert(location, "--out", out)

    assert sorted(p.name for p in out.iterdir()) == ["test", "train"]
    assert not (tmp_path / "cifar20.partial").exists()
    for split, files in truth.items():
        assert sorted(p.name for p in (out / split).iterdir()) == SUPERCLASSES
        written = {p.name: p for p in (out / split).rglob("*") if p.is_file()}
        assert sorted(written) == sorted(files)
        for name, (superclass, image) in files.items():
            assert written[name].parent.name == superclass
            with Image.open(written[name]) as decoded:
                assert decoded.format == "PNG" and decoded.mode == "RGB"
                np.testing.assert_array_equal(np.asarray(decoded), image)

    report = capsys.readouterr().out
    assert "train: 100 images; the official archive has 2500 per superclass" in report
    assert "test: 40 images; the official archive has 500 per superclass" in report
    assert "  vehicles_2: 5\n" in report and "  vehicles_2: 2\n" in report
    assert snapshot(location.parent) == before  # the input (and its folder) untouched


# README's overrides for training on the folder (data=folder replaces the cifar20 data group).
README_DATA = [
    "data=folder",
    "data.num_clusters=20",
    "data.mean=[0.5071,0.4865,0.4409]",
    "data.std=[0.2673,0.2564,0.2762]",
]


def test_the_folder_loads_with_the_readme_overrides(archive, tmp_path: Path, compose_config):
    folder, truth = archive
    out = tmp_path / "cifar20"
    convert(folder, "--out", out, "--split", "train")
    assert [p.name for p in out.iterdir()] == ["train"]

    overrides = ["experiment=cifar20", *README_DATA, f"data.path={out / 'train'}"]
    cfg = compose_config("train", [*overrides, "name=cifar20_folder"])
    complete_folder_recipe(cfg, overrides)  # as train() does
    assert (cfg.data.kind, cfg.data.num_clusters, cfg.data.image_size) == ("folder", 20, 32)
    assert (cfg.data.channels, cfg.data.augment.recipe) == (3, "natural")
    assert cfg.pretext.epochs == 500  # the experiment's schedule, not the folder recipe's
    dataset = build_dataset(cfg.data, "train")
    # Sorted folder names are the archive's superclass order, so targets equal coarse labels.
    assert dataset.class_names == SUPERCLASSES
    assert len(dataset) == 100
    for index in range(len(dataset)):
        superclass, image = truth["train"][Path(dataset.paths[index]).name]
        assert dataset.targets[index] == SUPERCLASSES.index(superclass)
        np.testing.assert_array_equal(np.asarray(dataset.load_image(index)), image)

    convert(folder, "--out", out, "--split", "test", "--overwrite")
    cfg = compose_config("evaluate", ["ckpt=x", *README_DATA, f"data.path={out / 'test'}"])
    # evaluate.py takes the image settings left auto from the checkpoint's training data.
    trained = {**to_plain(cfg.data), "channels": 3, "image_size": 32}
    assert len(build_dataset(as_trained(to_plain(cfg.data), trained), "val")) == 40


def test_a_non_empty_output_is_refused_unless_overwrite(archive, tmp_path: Path):
    folder, _ = archive
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert "is not empty; pass --overwrite" in refusal(folder, "--out", out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]

    convert(folder, "--out", out, "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["test", "train"]


def test_a_run_left_unfinished_is_replaced(archive, tmp_path: Path):
    folder, _ = archive
    out = tmp_path / "out"
    (tmp_path / "out.partial" / "train" / "fish").mkdir(parents=True)
    (tmp_path / "out.partial" / "train" / "fish" / "half_written.png").write_bytes(b"\x89PNG")
    convert(folder, "--out", out, "--split", "train")
    assert not (tmp_path / "out.partial").exists()
    assert sum(1 for p in out.rglob("*.png")) == 100


def test_output_inside_the_input_is_refused(archive):
    folder, _ = archive
    assert "overlaps the input" in refusal(folder, "--out", folder / "png")
    assert not (folder / "png").exists()


def test_repeated_file_names_get_their_index():
    names = ["a.png", "b.png", "a.png", "c"]
    assert cifar100_to_folder._png_names(names) == ["a_00000.png", "b.png", "a_00002.png", "c.png"]


def test_the_report_checks_the_files_written(capsys):
    official = np.full(20, 500)
    cifar100_to_folder._report("test", official, official, SUPERCLASSES)
    assert capsys.readouterr().out == "test: 10000 images, 500 in each of the 20 superclasses\n"
    with pytest.raises(RuntimeError, match=r"test: wrote \[499, 500, .*files per superclass"):
        cifar100_to_folder._report(
            "test", official - np.eye(20, dtype=int)[0], official, SUPERCLASSES
        )


def rewrite(folder: Path, split: str, change) -> None:
    content = pickle.loads((folder / split).read_bytes(), encoding="latin1")
    change(content)
    pickle_file(folder / split, content)


@pytest.mark.parametrize("kind", ["tarball", "folder"])
def test_a_missing_key_names_the_file(archive, tmp_path: Path, kind: str):
    folder, _ = archive
    rewrite(folder, "test", lambda content: content.pop("coarse_labels"))
    location = make_tarball(folder) if kind == "tarball" else folder
    message = refusal(location, "--out", tmp_path / "out")
    named = f"{location}:cifar-100-python/test" if kind == "tarball" else str(folder / "test")
    assert f"{named}: no 'coarse_labels' key" in message
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_a_wrong_shape_names_the_file(archive, tmp_path: Path):
    folder, _ = archive
    rewrite(folder, "train", lambda content: content.update(data=content["data"][:, :3000]))
    message = refusal(folder, "--out", tmp_path / "out")
    assert f"{folder / 'train'}: 'data' should be N x 3072 uint8" in message
    assert "found shape (100, 3000)" in message


def test_labels_of_another_length_name_the_file(archive):
    folder, _ = archive
    rewrite(folder, "test", lambda content: content["fine_labels"].pop())
    with pytest.raises(CIFAR100FormatError, match="'fine_labels' should be 40 integers"):
        read_split(folder, "test")


def test_superclasses_other_than_scans_are_refused(archive, tmp_path: Path):
    folder, _ = archive

    def relabel(content: dict) -> None:
        content["coarse_labels"][7] = (content["coarse_labels"][7] + 1) % 20

    rewrite(folder, "train", relabel)
    message = refusal(folder, "--out", tmp_path / "out")
    assert f"{folder / 'train'}: 1 coarse label(s) disagree with the CIFAR-100-20" in message
    assert "image 7" in message


def test_cifar10_is_not_cifar100(tmp_path: Path):
    folder = tmp_path / "cifar-10-batches-py"
    pickle_file(folder / "batches.meta", {"label_names": ["airplane"] * 10})
    out = tmp_path / "out"
    message = refusal(folder, "--out", out)
    assert f"{folder} is not a CIFAR-100 python archive: it holds no meta" in message
    tarball = make_tarball(folder)
    message = refusal(tarball, "--out", out)
    assert f"{tarball} is not the CIFAR-100 python archive: it holds no cifar-100-python/meta" in (
        message
    )

    pickle_file(folder / "meta", {"label_names": ["airplane"] * 10})
    assert f"{folder / 'meta'}: no 'fine_label_names' key" in refusal(folder, "--out", out)
    assert not out.exists()


class _RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


def test_a_pickle_that_would_run_code_is_refused(archive, tmp_path: Path):
    folder, _ = archive
    pickle_file(folder / "meta", {"fine_label_names": _RunsCode()})
    message = refusal(folder, "--out", tmp_path / "out")
    assert f"{folder / 'meta'}: not a CIFAR pickle" in message
    assert "getcwd, which a CIFAR pickle never does" in message
