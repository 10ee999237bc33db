"""The autoencoder pretext: decoder shapes, reconstruction losses, and that training learns."""

import pytest
import torch
import torch.nn.functional as F
import torchvision

from semclust.losses.reconstruction import PerceptualLoss, ReconstructionLoss
from semclust.models import build_backbone
from semclust.models.autoencoder import ConvDecoder
from semclust.stages.pretext.autoencoder import AutoencoderModule

# Early VGG19 layers keep the random-weight perceptual network cheap on 16x16 images.
SHALLOW_VGG = ["features.3", "features.8"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize(
    ("image_size", "channels", "upsamplings"), [(16, 1, 2), (16, 1, 3), (28, 1, 2), (32, 3, 3)]
)
def test_decoder_returns_images_of_the_configured_size(image_size, channels, upsamplings):
    decoder = ConvDecoder(64, image_size, channels, width=8, upsamplings=upsamplings)
    assert decoder(torch.randn(5, 64)).shape == (5, channels, image_size, image_size)


def test_decoder_refuses_images_smaller_than_its_upsampling():
    with pytest.raises(ValueError, match="image_size=4 is smaller"):
        ConvDecoder(32, 4, 1, upsamplings=3)


@pytest.mark.parametrize(("kind", "reference"), [("mse", F.mse_loss), ("l1", F.l1_loss)])
def test_pixel_losses_are_the_usual_ones(kind, reference):
    a, b = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(ReconstructionLoss(kind)(a, b), reference(a, b))


def test_unknown_loss_and_perceptual_without_network_are_refused():
    with pytest.raises(ValueError, match="unknown reconstruction loss 'ssim'"):
        ReconstructionLoss("ssim")
    with pytest.raises(ValueError, match="needs its feature network"):
        ReconstructionLoss("perceptual")


def test_perceptual_loss_compares_feature_maps_and_trains_only_the_input():
    perceptual = PerceptualLoss([0.5], [0.25], layers=SHALLOW_VGG, weights=None)
    images = torch.randn(3, 1, 16, 16)
    assert float(perceptual(images, images)) == pytest.approx(0.0, abs=1e-7)
    reconstruction = torch.randn(3, 1, 16, 16, requires_grad=True)
    loss = perceptual(reconstruction, images)
    assert loss.item() > 0
    loss.backward()
    assert reconstruction.grad is not None and reconstruction.grad.abs().sum() > 0
    assert all(p.grad is None for p in perceptual.parameters())
    # The frozen network keeps its batch-norm-free eval behaviour even in train mode.
    perceptual.train()
    assert not perceptual.features.training


def test_perceptual_loss_plus_pixel_term():
    perceptual = PerceptualLoss([0.5], [0.25], layers=SHALLOW_VGG, weights=None)
    a, b = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    plain = ReconstructionLoss("perceptual", perceptual)(a, b)
    mixed = ReconstructionLoss("perceptual", perceptual, pixel_weight=2.0)(a, b)
    torch.testing.assert_close(mixed, plain + 2.0 * F.mse_loss(a, b))


def test_perceptual_loss_works_on_other_torchvision_networks():
    perceptual = PerceptualLoss(
        [0.5, 0.5, 0.5], [0.25] * 3, network="resnet18", layers=["layer1"], weights=None
    )
    assert float(perceptual(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))) > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"network": "no_such_net"}, "unknown perceptual network 'no_such_net'"),
        ({"layers": ["features.999"]}, "are not all nodes of 'vgg19'"),
    ],
)
def test_perceptual_loss_names_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PerceptualLoss([0.5], [0.25], **{"weights": None, **kwargs})


def test_missing_pretrained_weights_give_an_offline_hint(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    with pytest.raises(RuntimeError, match=r"pretext.perceptual.weights=null"):
        PerceptualLoss([0.5], [0.25], weights="DEFAULT")


@pytest.mark.parametrize("loss", ["mse", "l1", "perceptual"])
def test_autoencoder_training_lowers_the_reconstruction_loss(loss):
    backbone = build_backbone("small_cnn", in_channels=1, width=8, feature_dim=32)
    perceptual = (
        PerceptualLoss([0.0], [1.0], layers=SHALLOW_VGG, weights=None)
        if loss == "perceptual"
        else None
    )
    module = AutoencoderModule(
        backbone,
        ConvDecoder(32, 16, 1, width=8, upsamplings=2),
        ReconstructionLoss(loss, perceptual),
        optimizer=lambda params: torch.optim.Adam(params, lr=3e-3),
    )
    images = torch.rand(16, 1, 16, 16)
    optimizer = module.configure_optimizers()
    # The perceptual network is frozen and so not handed to the optimizer.
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in [*backbone.parameters(), *module.decoder.parameters()]}
    module.train()
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        value = module.loss(module(images), images)
        value.backward()
        optimizer.step()
        losses.append(value.item())
    assert losses[-1] < 0.5 * losses[0]
