"""Self-labeling loss: cross-entropy on the model's own confident predictions."""

import torch
import torch.nn.functional as F


def confidence_cross_entropy(
    weak_logits: torch.Tensor,
    strong_logits: torch.Tensor,
    threshold: float,
    class_balancing: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Cross-entropy of strongly augmented views against confident pseudo-labels.

    A sample is confident when :math:`\max_k p_k(\text{weak}) > \tau`; its pseudo-label is
    :math:`y = \arg\max_k p_k(\text{weak})`. With :math:`M` the confident samples,

    .. math::
        \mathcal{L} = \frac{\sum_{i \in M} w_{y_i} \, (-\log q_{y_i}(\text{strong}_i))}
                           {\sum_{i \in M} w_{y_i}}, \qquad
        w_c = \frac{|M|}{|\{i \in M : y_i = c\}|}

    (:math:`w \equiv 1` without class balancing), so rare clusters are not drowned by big ones.
    The weak logits carry no gradient.

    Args:
        weak_logits: logits of the weakly augmented views, ``(B, K)``.
        strong_logits: logits of the strongly augmented views, ``(B, K)``.
        threshold: confidence threshold :math:`\tau` in ``[0, 1)``.
        class_balancing: weight each pseudo-class by its inverse frequency in ``M``.

    Returns the loss (zero, still attached to the graph, when no sample is confident) and the
    boolean mask of confident samples.
    """
    if weak_logits.shape != strong_logits.shape or weak_logits.ndim != 2:
        raise ValueError(
            f"expected two (B, K) tensors of equal shape, got "
            f"{tuple(weak_logits.shape)} and {tuple(strong_logits.shape)}"
        )
    with torch.no_grad():
        max_prob, pseudo_labels = F.softmax(weak_logits, dim=1).max(dim=1)
        confident = max_prob > threshold
    if not confident.any():
        return strong_logits.sum() * 0.0, confident
    targets = pseudo_labels[confident]
    weight = None
    if class_balancing:
        counts = torch.bincount(targets, minlength=weak_logits.shape[1]).to(strong_logits.dtype)
        weight = torch.where(counts > 0, targets.numel() / counts.clamp_min(1), 0.0)
    loss = F.cross_entropy(strong_logits[confident], targets, weight=weight)
    return loss, confident
