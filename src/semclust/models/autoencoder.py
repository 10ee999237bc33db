"""The autoencoder pretext: any backbone as the encoder, a convolutional decoder behind it.

The encoder's output is the latent code, so the mine and SCAN stages use an autoencoder's
backbone exactly as they use a SimCLR one.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class ConvDecoder(nn.Module):
    """Latent vector -> image: a linear layer onto a small grid, then upsampling conv blocks.

    Each block doubles the side (nearest upsampling, 3x3 conv, batch norm, ReLU); a last 3x3
    conv maps to the image channels without an activation, since images are normalised
    (mean/std) rather than bounded. Sides that are not ``start * 2**upsamplings`` are met by
    interpolating the output once.
    """

    def __init__(
        self,
        latent_dim: int,
        image_size: int,
        channels: int,
        width: int = 32,
        upsamplings: int = 3,
    ) -> None:
        super().__init__()
        if image_size < 2**upsamplings:
            raise ValueError(
                f"image_size={image_size} is smaller than the decoder's 2**{upsamplings} "
                "upsampling factor; lower pretext.decoder.upsamplings"
            )
        self.image_size = image_size
        self.start = math.ceil(image_size / 2**upsamplings)
        top = width * 2 ** (upsamplings - 1)
        self.project = nn.Sequential(
            nn.Linear(latent_dim, top * self.start * self.start),
            nn.ReLU(inplace=True),
        )
        self.top = top
        blocks = []
        c_in = top
        for _ in range(upsamplings):
            c_out = max(width, c_in // 2)
            blocks += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        blocks.append(nn.Conv2d(c_in, channels, 3, padding=1))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        grid = self.project(latent).view(-1, self.top, self.start, self.start)
        images = self.blocks(grid)
        if images.shape[-1] != self.image_size:
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear")
        return images
