"""SCAN loss: neighbours should agree, and the clusters should all be used."""

from typing import NamedTuple

import torch
import torch.nn.functional as F

from semclust.losses.distributed import process_count, sum_over_processes

_EPS = 1e-8


class ScanLossTerms(NamedTuple):
    total: torch.Tensor
    consistency: torch.Tensor
    entropy: torch.Tensor


def scan_loss(
    anchor_logits: torch.Tensor,
    neighbor_logits: torch.Tensor,
    entropy_weight: float,
    across_processes: bool = False,
) -> ScanLossTerms:
    r"""SCAN clustering loss for one head.

    With :math:`p = \mathrm{softmax}` of the logits (shape ``(B, K)``) and :math:`\bar p` the
    mean of the anchors' :math:`p` over the batch:

    .. math::
        \mathcal{L} = -\frac{1}{B}\sum_i \log \langle p(x_i), p(n_i) \rangle
                      - \lambda \, H(\bar p), \qquad
        H(\bar p) = -\sum_k \bar p_k \log \bar p_k

    Args:
        anchor_logits: logits of the anchors, ``(B, K)``.
        neighbor_logits: logits of one mined neighbour per anchor, ``(B, K)``.
        entropy_weight: :math:`\lambda`; larger spreads samples over more clusters.
        across_processes: under DDP, take :math:`\bar p` over every process's anchors (the
            global batch), so the entropy term is the one a single process would compute.

    Returns the total loss, the consistency term and the (positive) entropy.
    """
    if anchor_logits.shape != neighbor_logits.shape or anchor_logits.ndim != 2:
        raise ValueError(
            f"expected two (B, K) tensors of equal shape, got "
            f"{tuple(anchor_logits.shape)} and {tuple(neighbor_logits.shape)}"
        )
    anchor_probs = F.softmax(anchor_logits, dim=1)
    neighbor_probs = F.softmax(neighbor_logits, dim=1)
    agreement = (anchor_probs * neighbor_probs).sum(dim=1)
    consistency = -torch.log(agreement.clamp_min(_EPS)).mean()
    if across_processes and process_count() > 1:
        count = anchor_probs.new_tensor([anchor_probs.shape[0]])
        totals = sum_over_processes(torch.cat([anchor_probs.sum(dim=0), count]))
        mean_probs = totals[:-1] / totals[-1]
    else:
        mean_probs = anchor_probs.mean(dim=0)
    entropy = -(mean_probs * torch.log(mean_probs.clamp_min(_EPS))).sum()
    return ScanLossTerms(consistency - entropy_weight * entropy, consistency, entropy)
