"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR."""

import torch
import torch.nn.functional as F


def nt_xent_loss(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> torch.Tensor:
    r"""Contrastive loss between two views of the same batch.

    With :math:`z = \mathrm{normalize}([z_a; z_b])` (shape ``(2B, D)``) and
    :math:`s_{ij} = z_i \cdot z_j / \tau`, each row :math:`i` has one positive :math:`p(i)`
    (the other view of the same image) and :math:`2B - 2` negatives:

    .. math::
        \mathcal{L} = -\frac{1}{2B} \sum_i \log
            \frac{\exp s_{i\,p(i)}}{\sum_{j \ne i} \exp s_{ij}}

    Args:
        z_a: projections of the first view, ``(B, D)``; need not be normalised.
        z_b: projections of the second view, ``(B, D)``; row ``i`` pairs with ``z_a[i]``.
        temperature: :math:`\tau > 0`.

    Under DDP, pass the projections gathered from every process (with gradients) so each
    sample sees the negatives of the whole global batch.
    """
    if z_a.shape != z_b.shape or z_a.ndim != 2:
        raise ValueError(
            f"expected two (B, D) tensors of equal shape, got {tuple(z_a.shape)} "
            f"and {tuple(z_b.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    batch_size = z_a.shape[0]
    # In float32 under mixed precision too: a bf16 matmul gives similarities near 1 in steps
    # of 2**-8, which a temperature of 0.1 turns into logit steps of ~0.04.
    with torch.autocast(z_a.device.type, enabled=False):
        z = torch.cat([z_a, z_b])
        z = F.normalize(z.to(torch.promote_types(z.dtype, torch.float32)), dim=1)
        similarities = z @ z.T / temperature
        # A sample is never its own negative.
        self_mask = torch.eye(2 * batch_size, dtype=torch.bool, device=z.device)
        similarities = similarities.masked_fill(self_mask, float("-inf"))
        positives = torch.arange(2 * batch_size, device=z.device).roll(batch_size)
        return F.cross_entropy(similarities, positives)


def mean_cosine(z: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity over all ordered pairs of the rows of ``z`` (``(N, D)``), a row
    with itself included: 1 when every row points the same way, as the projections of a
    collapsed SimCLR do, and about ``1 / N`` for rows spread evenly. Computed as the squared
    length of the mean unit row, so in O(N D)."""
    with torch.autocast(z.device.type, enabled=False):
        unit = F.normalize(z.detach().to(torch.promote_types(z.dtype, torch.float32)), dim=1)
        return unit.mean(dim=0).square().sum()
