"""Self-labeling loss: cross-entropy on the model's own confident predictions."""

import torch
import torch.nn.functional as F

from semclust.losses.distributed import process_count, sum_over_processes


def confidence_cross_entropy(
    weak_logits: torch.Tensor,
    strong_logits: torch.Tensor,
    threshold: float,
    class_balancing: bool = True,
    across_processes: bool = False,
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
        across_processes: under DDP, let ``M`` be the confident samples of every process
            (the global batch): the weights and the normaliser are summed over processes and
            the loss scaled so that DDP's average of the processes' gradients is the
            gradient of the global loss above.

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
    num_classes = weak_logits.shape[1]
    # Masks, not selections: selecting the confident rows (or bincount) reads their number
    # back from the device, and the host waits for the GPU at every step.
    classes = torch.arange(num_classes, device=pseudo_labels.device)
    counts = ((pseudo_labels[:, None] == classes) & confident[:, None]).sum(dim=0).float()
    processes = 1
    if across_processes:
        processes = process_count()
        counts = sum_over_processes(counts)  # no gradient flows through the pseudo-labels
    if class_balancing:
        weights = torch.where(counts > 0, counts.sum() / counts.clamp_min(1), 0.0)
    else:
        weights = torch.ones_like(counts)
    # Sum of the weights over the (global) confident set: sum_c count_c * w_c, at least 1 when
    # any sample is confident; with none, every weight below is 0 and so is the loss.
    normaliser = (counts * weights).sum().clamp_min(1)
    per_sample = F.cross_entropy(strong_logits, pseudo_labels, reduction="none")
    sample_weights = torch.where(confident, weights[pseudo_labels], 0.0)
    loss = (sample_weights * per_sample).sum() * processes / normaliser
    return loss.to(strong_logits.dtype), confident
