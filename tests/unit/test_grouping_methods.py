"""Each `semclust group` method on small generated folders: exact copies, edited copies and
unrelated images; the chain rule on a morph; the cnn method with networks that download
nothing."""

import io
from pathlib import Path

import numpy as np
import pytest
import torchvision
from PIL import Image, ImageDraw, ImageEnhance
from torch import nn
from torchvision import transforms

from semclust.grouping import GroupOptions
from semclust.grouping.batches import group_images
from semclust.grouping.cnn import CnnMethod, build_cnn_method
from semclust.grouping.images import describe_paths
from semclust.grouping.registry import build_method

UNRELATED = ["c.png", "d.png", "e.png", "f.png", "g.png"]
# template and orb use opencv, which the GPU machine lacks.
PIXEL_METHODS = [
    "phash",
    "dhash",
    "ssim",
    pytest.param("template", marks=pytest.mark.needs("cv2")),
    pytest.param("orb", marks=pytest.mark.needs("cv2")),
    "minhash",
]


def scene(seed: int, size: int = 96) -> Image.Image:
    """Rectangles and ellipses on a gradient: corners for ORB and Harris, structure for
    SSIM, and a different hash for every seed."""
    rng = np.random.default_rng(seed)
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    pixels = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (size, size, 3))
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(10):
        x, y = (int(v) for v in rng.integers(0, size - 12, 2))
        width, height = (int(v) for v in rng.integers(8, size // 2, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.rectangle if rng.random() < 0.6 else draw.ellipse
        shape([x, y, x + width, y + height], fill=colour, outline=(0, 0, 0))
    return image


def edited(image: Image.Image, crop: float = 0.0) -> bytes:
    """An edited copy: ``crop`` of the width and height cut off the left and top, 10 %
    brighter, resized to 80 %, JPEG quality 70."""
    image = image.crop((round(image.width * crop), round(image.height * crop), *image.size))
    image = ImageEnhance.Brightness(image).enhance(1.1)
    image = image.resize((image.width * 4 // 5, image.height * 4 // 5), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def copies_folder(tmp_path_factory) -> Path:
    """a.png and its exact copy, b.png and an edited copy, five unrelated scenes."""
    folder = tmp_path_factory.mktemp("copies")
    scene(1).save(folder / "a.png")
    (folder / "a_copy.png").write_bytes((folder / "a.png").read_bytes())
    scene(2).save(folder / "b.png")
    (folder / "b_edited.jpg").write_bytes(edited(scene(2)))
    for seed, name in enumerate(UNRELATED, start=3):
        scene(seed).save(folder / name)
    return folder


def groups_of(folder: Path, options: GroupOptions, method=None) -> dict[str, int]:
    method = method or build_method(options)
    paths = sorted(folder.iterdir())
    grouping = group_images(paths, method, options)
    assert len(grouping.paths) == len(paths)
    return {path.name: int(c) for path, c in zip(grouping.paths, grouping.component, strict=True)}


def assert_copies_grouped_and_nothing_else(group: dict[str, int]) -> None:
    assert group["a.png"] == group["a_copy.png"]
    assert group["b.png"] == group["b_edited.jpg"]
    leaders = [group[name] for name in ["a.png", "b.png", *UNRELATED]]
    assert len(set(leaders)) == len(leaders), group


@pytest.mark.parametrize("name", PIXEL_METHODS)
def test_each_method_groups_exact_and_edited_copies_and_keeps_unrelated_apart(name, copies_folder):
    assert_copies_grouped_and_nothing_else(
        groups_of(copies_folder, GroupOptions(method=name, progress=False))
    )


@pytest.mark.parametrize("name", ["phash", "dhash"])
def test_hash_methods_link_a_cropped_copy_whose_hash_differs(name, tmp_path):
    scene(2).save(tmp_path / "b.png")
    (tmp_path / "b_cropped.jpg").write_bytes(edited(scene(2), crop=0.02))
    for seed in range(3, 6):
        scene(seed).save(tmp_path / f"other{seed}.png")
    method = build_method(GroupOptions(method=name))
    paths = sorted(tmp_path.iterdir())
    signatures = describe_paths(method, paths, progress=False).signatures
    similarity = method.similarity(signatures, np.array([[0, 1]]))[0]  # b.png, b_cropped.jpg
    assert method.default_threshold <= similarity < 1.0
    group = groups_of(tmp_path, GroupOptions(method=name, progress=False))
    assert group["b.png"] == group["b_cropped.jpg"]
    assert len(set(group.values())) == 4


def pooled_pixels() -> CnnMethod:
    """A weightless stand-in network: 8x8 average-pooled normalised pixels."""
    preprocess = transforms.Compose(
        [
            transforms.Resize((64, 64)),
            transforms.ToTensor(),
            transforms.Normalize([0.5] * 3, [0.25] * 3),
        ]
    )
    return CnnMethod(nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Flatten()), preprocess, 64, 3, "cpu")


def test_the_cnn_method_groups_copies_by_embedding_cosine(copies_folder):
    options = GroupOptions(method="cnn", progress=False)
    assert_copies_grouped_and_nothing_else(groups_of(copies_folder, options, pooled_pixels()))


def test_a_torchvision_network_with_random_weights_downloads_nothing(copies_folder, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    # Weights.get_state_dict calls torchvision's own import of the function, not torch.hub's.
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_download)
    method = build_cnn_method("mobilenet_v3_small", "none", "cpu")
    with pytest.raises(AssertionError, match="a download was attempted"):  # the guard holds
        build_cnn_method("mobilenet_v3_small", "DEFAULT", "cpu")
    assert method.decode_size == 224
    # Random weights say little about likeness, but exact copies embed identically.
    options = GroupOptions(method="cnn", threshold=0.9999, progress=False)
    group = groups_of(copies_folder, options, method)
    assert group["a.png"] == group["a_copy.png"]


def test_the_chain_rule_joins_the_ends_of_a_morph_that_are_not_alike(tmp_path):
    """X~A~B~Y with X and Y below the threshold: one group."""
    start, end = np.asarray(scene(11), np.float64), np.asarray(scene(12), np.float64)
    names = []
    for step, weight in enumerate(np.linspace(0.0, 1.0, 5)):
        pixels = ((1 - weight) * start + weight * end).round().astype(np.uint8)
        names.append(f"frame{step}.png")
        Image.fromarray(pixels).save(tmp_path / names[-1])
    method = build_method(GroupOptions(method="ssim"))
    paths = [tmp_path / name for name in names]
    signatures = describe_paths(method, paths, progress=False).signatures
    steps = method.similarity(signatures, np.array([[i, i + 1] for i in range(4)]))
    ends = method.similarity(signatures, np.array([[0, 4]]))[0]
    threshold = float(steps.min()) - 1e-6
    assert ends < threshold  # the ends are not alike themselves
    options = GroupOptions(method="ssim", threshold=threshold, progress=False)
    group = groups_of(tmp_path, options, method)
    assert len({group[name] for name in names}) == 1
    # Just above the weakest link, the chain breaks there.
    options = GroupOptions(method="ssim", threshold=float(steps.min()) + 1e-6, progress=False)
    assert len(set(groups_of(tmp_path, options, method).values())) == 2


@pytest.mark.parametrize("name", PIXEL_METHODS)
def test_similarities_are_one_for_identical_images_and_within_zero_and_one(name, copies_folder):
    paths = sorted(copies_folder.iterdir())
    pairs = np.array([[i, j] for i in range(len(paths)) for j in range(i + 1, len(paths))])
    same = [
        i
        for i, (a, b) in enumerate(pairs)
        if {paths[a].name, paths[b].name} == {"a.png", "a_copy.png"}
    ]
    method = build_method(GroupOptions(method=name))
    values = method.similarity(describe_paths(method, paths, progress=False).signatures, pairs)
    assert values.shape == (len(pairs),)
    assert ((values >= 0) & (values <= 1)).all()
    assert values[same] == pytest.approx(1.0)
