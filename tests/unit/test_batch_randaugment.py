"""Batched RandAugment against torchvision's own per-image RandAugment ops."""

import pytest
import torch
from torchvision.transforms import v2

from semclust.data.batch_randaugment import (
    GEOMETRIC_OPS,
    MAGNITUDE,
    NUM_MAGNITUDE_BINS,
    OP_NAMES,
    OPS,
    apply_choices,
    apply_op,
    draw_choices,
    magnitude,
    move_pixels,
    pixel_maps,
    rand_augment,
)


def make_images(batch_size: int, channels: int, height: int = 11, width: int = 14) -> torch.Tensor:
    """Random noise, gradients, flat images and narrow-range images, which reach every
    branch of autocontrast and equalize (a flat image has nothing to stretch)."""
    generator = torch.Generator().manual_seed(1234)
    noise = torch.randint(0, 256, (batch_size, channels, height, width), generator=generator)
    ramp = torch.arange(height * width).reshape(height, width) * 255 // (height * width - 1)
    kinds = torch.arange(batch_size) % 4
    images = noise.clone()
    images[kinds == 1] = ramp.expand(channels, height, width)
    images[kinds == 2] = (torch.arange(channels) * 90 + 30).view(channels, 1, 1)
    images[kinds == 3] = 100 + noise[kinds == 3] // 16
    return images.to(torch.uint8)


def reference(images: torch.Tensor, op: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """torchvision's RandAugment op code, one image at a time, for the given choices."""
    augment = v2.RandAugment()
    height, width = images.shape[-2:]
    outputs = []
    for i, image in enumerate(images):
        for r in range(op.shape[0]):
            name = OP_NAMES[int(op[r, i])]
            magnitudes_fn, signed = augment._AUGMENTATION_SPACE[name]
            magnitudes = magnitudes_fn(augment.num_magnitude_bins, height, width)
            value = 0.0 if magnitudes is None else float(magnitudes[augment.magnitude])
            if signed and negative[r, i]:
                value = -value
            image = augment._apply_image_or_video_transform(
                image, name, value, interpolation=augment.interpolation, fill=augment._fill
            )
        outputs.append(image)
    return torch.stack(outputs)


def test_op_table_is_torchvisions_randaugment_space():
    augment = v2.RandAugment()
    assert (augment.magnitude, augment.num_magnitude_bins) == (MAGNITUDE, NUM_MAGNITUDE_BINS)
    space = augment._AUGMENTATION_SPACE
    assert tuple(space) == OP_NAMES
    for name, signed in OPS:
        magnitudes_fn, torchvision_signed = space[name]
        assert signed == torchvision_signed, name
        for height, width in [(32, 32), (11, 14), (96, 64)]:
            magnitudes = magnitudes_fn(NUM_MAGNITUDE_BINS, height, width)
            expected = 0.0 if magnitudes is None else float(magnitudes[MAGNITUDE])
            assert magnitude(name, height, width) == expected, name


@pytest.mark.parametrize("channels", [1, 3])
def test_each_sample_equals_torchvision_randaugment_for_its_choices(channels):
    images = make_images(96, channels)
    choices = draw_choices(96, torch.Generator().manual_seed(0), num_ops=4)
    # The check is only as strong as the ops it reaches: every (op, sign) must occur.
    pairs = set(
        zip(choices.op.flatten().tolist(), choices.negative.flatten().tolist(), strict=True)
    )
    assert pairs == {(k, neg) for k, (_, signed) in enumerate(OPS) for neg in {False, signed}}
    result = rand_augment(images, torch.Generator().manual_seed(0), num_ops=4)
    expected = reference(images, choices.op, choices.negative)
    mismatched = (result != expected).flatten(1).any(1).nonzero().flatten().tolist()
    assert mismatched == []


@pytest.mark.parametrize("channels", [1, 3])
def test_every_op_alone_matches_torchvision_on_a_batch(channels):
    images = make_images(16, channels, height=9, width=9)
    for k, (name, signed) in enumerate(OPS):
        for negative in {False, signed}:
            op = torch.full((1, 16), k)
            flags = torch.full((1, 16), negative)
            result = apply_op(images, name, (-1 if negative else 1) * magnitude(name, 9, 9))
            assert torch.equal(result, reference(images, op, flags)), (name, negative)


@pytest.mark.parametrize("height, width", [(32, 32), (11, 14)])
def test_geometric_ops_through_their_pixel_maps_equal_torchvision_s(height, width):
    images = make_images(12, 3, height, width)
    count = len(images)
    source, outside = pixel_maps(height, width, images.device)
    assert source.shape == outside.shape == (1 + 2 * len(GEOMETRIC_OPS), height * width)
    assert torch.equal(move_pixels(images, torch.zeros(count, dtype=torch.long)), images)
    for index, name in enumerate(GEOMETRIC_OPS):
        for negative in (False, True):
            row = 1 + 2 * index + negative
            op = torch.full((1, count), OP_NAMES.index(name))
            expected = reference(images, op, torch.full((1, count), negative))
            moved = move_pixels(images, torch.full((count,), row))
            assert torch.equal(moved, expected), (name, negative)
            assert 0 < int(outside[row].sum()) < height * width  # some pixels fall outside


def test_color_leaves_a_grayscale_image_unchanged_like_torchvision():
    images = make_images(4, 1)
    assert torch.equal(apply_op(images, "Color", magnitude("Color", 11, 14)), images)
    assert torch.equal(apply_op(images, "Color", -magnitude("Color", 11, 14)), images)


def test_ops_are_uniform_and_signs_fair():
    num_ops, batch_size = 4, 25_000
    choices = draw_choices(batch_size, torch.Generator().manual_seed(7), num_ops)
    assert choices.op.shape == choices.negative.shape == (num_ops, batch_size)
    counts = torch.bincount(choices.op.flatten(), minlength=len(OPS)).double()
    expected = num_ops * batch_size / len(OPS)
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    assert chi_square < 40.0  # 13 degrees of freedom: P(chi2 > 40) is about 1e-4
    signed = torch.tensor([s for _, s in OPS])[choices.op]
    assert not choices.negative[~signed].any()
    share_negative = float(choices.negative[signed].double().mean())
    spread = (0.25 / int(signed.sum())) ** 0.5
    assert abs(share_negative - 0.5) < 5 * spread
    # Rounds are independent of each other: op pairs in rounds 0 and 1 are uniform too.
    pair_counts = torch.bincount(choices.op[0] * len(OPS) + choices.op[1], minlength=len(OPS) ** 2)
    pair_expected = batch_size / len(OPS) ** 2
    pair_chi_square = float(((pair_counts.double() - pair_expected) ** 2 / pair_expected).sum())
    assert pair_chi_square < 275.0  # 195 degrees of freedom: P(chi2 > 275) is about 1e-4


@pytest.mark.parametrize("num_ops", [0, 1, 2, 4])
def test_rand_augment_applies_num_ops_rounds_of_drawn_choices(num_ops):
    images = make_images(24, 3)
    choices = draw_choices(24, torch.Generator().manual_seed(3), num_ops)
    assert choices.op.shape == (num_ops, 24)
    result = rand_augment(images, torch.Generator().manual_seed(3), num_ops)
    assert torch.equal(result, apply_choices(images, choices))
    assert torch.equal(result, reference(images, choices.op, choices.negative))
    if num_ops == 0:
        assert torch.equal(result, images)


def test_same_seed_gives_same_result_and_another_seed_differs():
    images = make_images(32, 3)
    first = rand_augment(images, torch.Generator().manual_seed(11))
    again = rand_augment(images, torch.Generator().manual_seed(11))
    other = rand_augment(images, torch.Generator().manual_seed(12))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("channels", [1, 3])
def test_input_is_unchanged_and_shape_dtype_device_are_kept(channels):
    images = make_images(20, channels)
    before = images.clone()
    for num_ops in (0, 4):
        result = rand_augment(images, torch.Generator().manual_seed(5), num_ops)
        assert result.shape == images.shape
        assert result.dtype == torch.uint8
        assert result.device == images.device
        assert result.data_ptr() != images.data_ptr()
    assert torch.equal(images, before)


def test_an_empty_batch_gives_an_empty_batch():
    images = torch.zeros(0, 3, 8, 8, dtype=torch.uint8)
    assert rand_augment(images, torch.Generator().manual_seed(0)).shape == (0, 3, 8, 8)


def test_rejects_float_images_and_four_channels():
    with pytest.raises(ValueError, match="uint8"):
        rand_augment(torch.zeros(2, 3, 8, 8), torch.Generator())
    with pytest.raises(ValueError, match="uint8"):
        rand_augment(torch.zeros(2, 4, 8, 8, dtype=torch.uint8), torch.Generator())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("channels", [1, 3])
def test_cuda_gives_the_same_images_as_cpu(channels):
    images = make_images(256, channels, height=32, width=32)
    on_cpu = rand_augment(images, torch.Generator().manual_seed(9))
    on_cuda = rand_augment(images.cuda(), torch.Generator().manual_seed(9))
    assert on_cuda.device.type == "cuda"
    assert torch.equal(on_cuda.cpu(), on_cpu)
