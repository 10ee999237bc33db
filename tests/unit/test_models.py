"""Backbones, cluster heads and the clustering model: shapes, head selection, bad names."""

import pytest
import torch

from semclust.models import ClusterHeads, ClusteringModel, ProjectionHead, build_backbone


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def features_of(backbone: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    backbone.eval()
    with torch.no_grad():
        return backbone(images)


@pytest.mark.parametrize(("width", "feature_dim", "size"), [(8, 32, 8), (8, 64, 16), (4, 16, 28)])
def test_small_cnn_output_shape(width: int, feature_dim: int, size: int):
    backbone = build_backbone("small_cnn", in_channels=1, width=width, feature_dim=feature_dim)
    assert backbone.feature_dim == feature_dim
    assert features_of(backbone, torch.randn(3, 1, size, size)).shape == (3, feature_dim)


@pytest.mark.parametrize("in_channels", [1, 3])
def test_resnet18_cifar_gives_512_features_on_32x32(in_channels: int):
    backbone = build_backbone("resnet18_cifar", in_channels=in_channels)
    assert backbone.feature_dim == 512
    assert features_of(backbone, torch.randn(2, in_channels, 32, 32)).shape == (2, 512)


@pytest.mark.parametrize("in_channels", [1, 3])
def test_cifar_stem_is_initialised_like_the_other_convolutions(in_channels: int):
    # torchvision and SCAN's CIFAR ResNet draw every convolution from a normal of std
    # sqrt(2 / fan_out); a replaced stem left at PyTorch's default (uniform, std
    # 1 / sqrt(3 fan_in)) starts 1.9x (3 channels) to 3.3x (1 channel) wider.
    stem = build_backbone("resnet18_cifar", in_channels=in_channels).model.conv1.weight
    assert stem.shape == (64, in_channels, 3, 3)
    expected_std = (2 / (64 * 3 * 3)) ** 0.5
    assert stem.std().item() == pytest.approx(expected_std, rel=0.1)
    assert abs(stem.mean().item()) < 0.1 * expected_std


@pytest.mark.parametrize(
    ("model_name", "feature_dim"), [("resnet18", 512), ("mobilenet_v3_small", 1024)]
)
def test_torchvision_backbone_returns_pre_classifier_features(model_name: str, feature_dim: int):
    backbone = build_backbone("torchvision", model_name=model_name, in_channels=3, weights=None)
    assert backbone.feature_dim == feature_dim
    assert features_of(backbone, torch.randn(2, 3, 64, 64)).shape == (2, feature_dim)


@pytest.mark.parametrize("in_channels", [1, 3])
def test_timm_backbone_returns_pooled_features(in_channels: int):
    backbone = build_backbone(
        "timm", model_name="resnet18", in_channels=in_channels, pretrained=False
    )
    assert backbone.feature_dim == 512
    assert features_of(backbone, torch.randn(2, in_channels, 32, 32)).shape == (2, 512)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("no_such_backbone", {}, "unknown backbone"),
        ("torchvision", {"model_name": "no_such_model"}, "unknown torchvision model"),
        ("timm", {"model_name": "no_such_model"}, "unknown timm model"),
        ("torchvision", {"model_name": "resnet18", "in_channels": 1}, "expects 3 input channels"),
        ("torchvision", {"model_name": "mobilenet_v3_small", "cifar_stem": True}, "ResNets only"),
    ],
)
def test_bad_backbone_specs_raise_value_error(name: str, kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        build_backbone(name, **kwargs)


def test_a_mistyped_timm_name_gets_the_closest_names():
    with pytest.raises(ValueError, match=r"unknown timm model 'resnet_18'; did you mean resnet18,"):
        build_backbone("timm", model_name="resnet_18")


class TestClusterHeads:
    def test_forward_stacks_every_head(self):
        heads = ClusterHeads(feature_dim=6, num_clusters=4, num_heads=3)
        features = torch.randn(5, 6)
        logits = heads(features)
        assert logits.shape == (3, 5, 4)
        for i, head in enumerate(heads.heads):
            torch.testing.assert_close(logits[i], features @ head.weight.T + head.bias)

    def test_heads_are_initialised_independently(self):
        heads = ClusterHeads(feature_dim=6, num_clusters=4, num_heads=2)
        assert not torch.equal(heads.heads[0].weight, heads.heads[1].weight)

    @pytest.mark.parametrize("index", [0, 1, 2])
    def test_keep_leaves_exactly_the_chosen_head(self, index: int):
        heads = ClusterHeads(feature_dim=6, num_clusters=4, num_heads=3)
        features = torch.randn(5, 6)
        before = heads(features)[index]
        chosen = {name: p.clone() for name, p in heads.heads[index].named_parameters()}
        heads.keep(index)
        assert len(heads.heads) == 1
        kept = dict(heads.heads[0].named_parameters())
        assert kept.keys() == chosen.keys()
        for name, value in chosen.items():
            torch.testing.assert_close(kept[name], value, rtol=0, atol=0)
        assert heads(features).shape == (1, 5, 4)
        torch.testing.assert_close(heads(features)[0], before)
        assert sum(p.numel() for p in heads.parameters()) == 6 * 4 + 4

    @pytest.mark.parametrize(
        ("num_clusters", "num_heads", "message"),
        [(1, 1, "num_clusters must be at least 2, got 1"), (4, 0, "num_heads must be at least 1")],
    )
    def test_rejects_degenerate_sizes(self, num_clusters: int, num_heads: int, message: str):
        with pytest.raises(ValueError, match=message):
            ClusterHeads(feature_dim=6, num_clusters=num_clusters, num_heads=num_heads)


def test_clustering_model_forward_shape_and_composition():
    model = ClusteringModel(
        build_backbone("small_cnn", in_channels=1, width=4), num_clusters=5, num_heads=2
    ).eval()
    images = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        logits = model(images)
        expected = model.cluster_heads(model.backbone(images))
    assert logits.shape == (2, 3, 5)
    torch.testing.assert_close(logits, expected)


def test_projection_head_shape():
    head = ProjectionHead(feature_dim=12, hidden_dim=7, output_dim=3)
    assert head(torch.randn(4, 12)).shape == (4, 3)


# pretrained networks: built here with random weights, never downloaded ----------------------


@pytest.mark.parametrize("in_channels", [1, 3])
def test_open_clip_image_encoder_returns_its_embedding(in_channels: int):
    backbone = build_backbone(
        "open_clip", model_name="ViT-S-32", pretrained=None, in_channels=in_channels, image_size=64
    )
    assert backbone.feature_dim == 384
    assert not hasattr(backbone, "transformer")  # the text tower is dropped
    assert features_of(backbone, torch.randn(2, in_channels, 64, 64)).shape == (2, 384)


def test_open_clip_backbone_around_a_whole_model_shares_its_image_tower():
    from semclust.models.backbones import OpenClipBackbone, create_open_clip

    clip = create_open_clip("ViT-S-32", image_size=64).eval()
    backbone = OpenClipBackbone.around(clip, in_channels=1)
    assert backbone.visual is clip.visual and backbone.feature_dim == 384
    images = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(
            backbone(images), clip.encode_image(images.expand(-1, 3, -1, -1))
        )
    # Saved, it loads into the backbone that its spec builds.
    built = build_backbone("open_clip", model_name="ViT-S-32", in_channels=1, image_size=64)
    built.load_state_dict(backbone.state_dict())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_name": "no_such_clip"}, "unknown open_clip model 'no_such_clip'"),
        ({"model_name": "ViT-S-32", "in_channels": 4}, "1 or 3 channels"),
    ],
)
def test_open_clip_backbone_names_bad_settings(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        build_backbone("open_clip", **kwargs)


def test_native_preprocessing_is_read_from_the_registries_without_downloading():
    from open_clip.constants import OPENAI_DATASET_MEAN

    from semclust.models.backbones import native_preprocessing

    clip = native_preprocessing(
        {"name": "open_clip", "model_name": "ViT-B-32", "pretrained": "openai"}
    )
    assert clip["image_size"] == 224 and tuple(clip["mean"]) == OPENAI_DATASET_MEAN
    vit = native_preprocessing(
        {"name": "timm", "model_name": "vit_small_patch16_224", "pretrained": True}
    )
    assert vit == {"image_size": 224, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    resnet = native_preprocessing(
        {"name": "torchvision", "model_name": "resnet18", "weights": "DEFAULT"}
    )
    assert resnet["image_size"] == 224 and list(resnet["mean"]) == [0.485, 0.456, 0.406]
    # Without pretrained weights there is nothing to match.
    assert (
        native_preprocessing({"name": "timm", "model_name": "resnet18", "pretrained": False})
        is None
    )
    assert native_preprocessing({"name": "small_cnn"}) is None
    with pytest.raises(ValueError, match="unknown weights 'NOPE'"):
        native_preprocessing({"name": "torchvision", "model_name": "resnet18", "weights": "NOPE"})


def test_saved_backbone_specs_never_download_when_rebuilt():
    from semclust.inference.spec import backbone_spec

    timm_cfg = {"_target_": "x", "name": "timm", "model_name": "resnet18", "pretrained": True}
    clip_cfg = {"name": "open_clip", "model_name": "ViT-B-32", "pretrained": "openai"}
    tv_cfg = {"name": "torchvision", "model_name": "resnet18", "weights": "DEFAULT"}
    assert backbone_spec(timm_cfg) == {"name": "timm", "model_name": "resnet18", "pretrained": None}
    assert backbone_spec(clip_cfg)["pretrained"] is None
    assert backbone_spec(tv_cfg)["weights"] is None
