"""The three training losses and SCAN's validation loss against naive loop references."""

import math

import pytest
import torch

from semclust.losses import confidence_cross_entropy, mean_cosine, nt_xent_loss, scan_loss
from semclust.stages.scan import scan_validation_losses

EPS = 1e-8


def random_tensor(
    *shape: int, seed: int, scale: float = 1.0, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=generator, dtype=torch.float64)).to(dtype)


def softmax_row(logits: list[float]) -> list[float]:
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = sum(exps)
    return [e / total for e in exps]


def entropy(probabilities: list[float]) -> float:
    return -sum(p * math.log(max(p, EPS)) for p in probabilities)


def naive_nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> float:
    rows = z_a.tolist() + z_b.tolist()
    rows = [[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in rows]
    n, half = len(rows), len(rows) // 2
    total = 0.0
    for i in range(n):
        positive = i + half if i < half else i - half
        sims = [
            sum(a * b for a, b in zip(rows[i], rows[j], strict=True)) / temperature
            for j in range(n)
        ]
        denominator = sum(math.exp(sims[j]) for j in range(n) if j != i)
        total += -math.log(math.exp(sims[positive]) / denominator)
    return total / n


def naive_scan(
    anchor_logits: torch.Tensor, neighbor_logits: torch.Tensor, weight: float
) -> tuple[float, float, float]:
    anchors = [softmax_row(row) for row in anchor_logits.tolist()]
    neighbors = [softmax_row(row) for row in neighbor_logits.tolist()]
    consistency = 0.0
    for p_a, p_n in zip(anchors, neighbors, strict=True):
        agreement = sum(a * b for a, b in zip(p_a, p_n, strict=True))
        consistency += -math.log(max(agreement, EPS))
    consistency /= len(anchors)
    num_clusters = len(anchors[0])
    mean_probs = [sum(p[k] for p in anchors) / len(anchors) for k in range(num_clusters)]
    ent = entropy(mean_probs)
    return consistency - weight * ent, consistency, ent


def naive_confidence_ce(
    weak_logits: torch.Tensor, strong_logits: torch.Tensor, threshold: float, class_balancing: bool
) -> tuple[float, list[bool]]:
    mask, labels = [], []
    for row in weak_logits.tolist():
        probs = softmax_row(row)
        best = max(range(len(probs)), key=lambda k: probs[k])
        mask.append(probs[best] > threshold)
        labels.append(best)
    confident = [i for i, keep in enumerate(mask) if keep]
    if not confident:
        return 0.0, mask
    counts: dict[int, int] = {}
    for i in confident:
        counts[labels[i]] = counts.get(labels[i], 0) + 1
    numerator = denominator = 0.0
    for i in confident:
        y = labels[i]
        weight = len(confident) / counts[y] if class_balancing else 1.0
        ce = -math.log(softmax_row(strong_logits[i].tolist())[y])
        numerator += weight * ce
        denominator += weight
    return numerator / denominator, mask


def naive_scan_validation(
    probabilities: torch.Tensor, neighbor_indices: torch.Tensor, weight: float
) -> list[float]:
    num_samples, num_heads, num_clusters = probabilities.shape
    probs = probabilities.tolist()
    losses = []
    for h in range(num_heads):
        terms = []
        for n in range(num_samples):
            for j in neighbor_indices[n].tolist():
                agreement = sum(probs[n][h][c] * probs[j][h][c] for c in range(num_clusters))
                terms.append(-math.log(max(agreement, EPS)))
        mean_probs = [
            sum(probs[n][h][c] for n in range(num_samples)) / num_samples
            for c in range(num_clusters)
        ]
        losses.append(sum(terms) / len(terms) - weight * entropy(mean_probs))
    return losses


def as_tensor(value: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(value, dtype=dtype)


class TestNtXent:
    @pytest.mark.parametrize("temperature", [0.05, 0.1, 0.5, 1.0])
    @pytest.mark.parametrize(("batch_size", "dim"), [(2, 3), (5, 8), (16, 4)])
    def test_matches_loop_reference(self, batch_size: int, dim: int, temperature: float):
        z_a = random_tensor(batch_size, dim, seed=batch_size, scale=3.0)
        z_b = random_tensor(batch_size, dim, seed=batch_size + 100)
        loss = nt_xent_loss(z_a, z_b, temperature)
        assert loss.shape == ()
        torch.testing.assert_close(loss, as_tensor(naive_nt_xent(z_a, z_b, temperature)))

    def test_single_pair_has_no_negatives_and_zero_loss(self):
        z_a, z_b = random_tensor(1, 4, seed=0), random_tensor(1, 4, seed=1)
        torch.testing.assert_close(nt_xent_loss(z_a, z_b, 0.1), as_tensor(0.0))

    def test_identical_views_score_lower_than_unrelated_views(self):
        z_a = random_tensor(8, 16, seed=2)
        aligned = nt_xent_loss(z_a, z_a.clone(), 0.1)
        unrelated = nt_xent_loss(z_a, random_tensor(8, 16, seed=3), 0.1)
        assert aligned < unrelated

    @pytest.mark.parametrize(
        ("shape_a", "shape_b"), [((4, 8), (4, 9)), ((4, 8), (5, 8)), ((8,), (8,))]
    )
    def test_rejects_mismatched_shapes(self, shape_a, shape_b):
        with pytest.raises(ValueError, match="equal shape"):
            nt_xent_loss(torch.randn(*shape_a), torch.randn(*shape_b), 0.5)

    @pytest.mark.parametrize("temperature", [0.0, -0.1])
    def test_rejects_non_positive_temperature(self, temperature: float):
        with pytest.raises(ValueError, match="temperature must be positive"):
            nt_xent_loss(torch.randn(4, 8), torch.randn(4, 8), temperature)

    def test_gradient_is_finite_and_matches_finite_differences(self):
        z_a = random_tensor(4, 5, seed=4).requires_grad_()
        z_b = random_tensor(4, 5, seed=5).requires_grad_()
        nt_xent_loss(z_a, z_b, 0.2).backward()
        for grad in (z_a.grad, z_b.grad):
            assert grad is not None
            assert torch.isfinite(grad).all()
            assert grad.abs().sum() > 0
        assert torch.autograd.gradcheck(lambda a, b: nt_xent_loss(a, b, 0.2), (z_a, z_b))

    def test_under_bf16_autocast_it_is_the_float32_loss_of_the_same_projections(self):
        # trainer=gpu trains under bf16 autocast, where a matmul keeps 8 significant bits
        # (steps of 2**-8 near 1, 0.04 in a logit at temperature 0.1): similarities in float32.
        z_a = random_tensor(512, 128, seed=6)
        z_b = z_a + 0.5 * random_tensor(512, 128, seed=7)  # positives alike, as in training
        # The projection head's outputs under autocast: bf16 tensors.
        z_a, z_b = z_a.bfloat16().requires_grad_(), z_b.bfloat16().requires_grad_()
        exact_a, exact_b = (z.detach().float().requires_grad_() for z in (z_a, z_b))
        expected = nt_xent_loss(exact_a, exact_b, 0.1)
        expected.backward()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nt_xent_loss(z_a, z_b, 0.1)
        loss.backward()
        assert loss.dtype == torch.float32
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
        for grad, exact in ((z_a.grad, exact_a.grad), (z_b.grad, exact_b.grad)):
            # The gradient reaches the bf16 projections rounded to bf16 once, no worse.
            assert ((grad.float() - exact).norm() / exact.norm()).item() < 4e-3


class TestMeanCosine:
    def test_matches_the_mean_of_every_pairwise_cosine(self):
        z = random_tensor(7, 5, seed=8, scale=4.0)
        unit = z / z.norm(dim=1, keepdim=True)
        torch.testing.assert_close(mean_cosine(z), (unit @ unit.T).mean())

    def test_is_one_when_collapsed_and_one_over_n_for_orthogonal_rows(self):
        # A collapsed SimCLR: one direction, lengths free (the projections blow up).
        direction = random_tensor(1, 16, seed=9)
        collapsed = direction * torch.arange(1, 9, dtype=torch.float64)[:, None]
        torch.testing.assert_close(mean_cosine(collapsed), as_tensor(1.0))
        torch.testing.assert_close(mean_cosine(torch.eye(8, dtype=torch.float64)), as_tensor(1 / 8))

    def test_is_float32_and_detached_for_bf16_projections(self):
        z = random_tensor(64, 32, seed=10).bfloat16().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cosine = mean_cosine(z)
        assert cosine.dtype == torch.float32
        assert not cosine.requires_grad


class TestScanLoss:
    @pytest.mark.parametrize("weight", [0.0, 1.0, 5.0])
    @pytest.mark.parametrize(("batch_size", "num_clusters"), [(1, 2), (6, 3), (32, 10)])
    def test_matches_loop_reference(self, batch_size: int, num_clusters: int, weight: float):
        anchors = random_tensor(batch_size, num_clusters, seed=batch_size, scale=2.0)
        neighbors = random_tensor(batch_size, num_clusters, seed=num_clusters, scale=2.0)
        terms = scan_loss(anchors, neighbors, weight)
        expected = naive_scan(anchors, neighbors, weight)
        for actual, wanted in zip(terms, expected, strict=True):
            torch.testing.assert_close(actual, as_tensor(wanted))

    @pytest.mark.parametrize("weight", [0.0, 1.0, 5.0])
    def test_total_is_consistency_minus_weighted_entropy(self, weight: float):
        anchors, neighbors = random_tensor(10, 4, seed=6), random_tensor(10, 4, seed=7)
        total, consistency, ent = scan_loss(anchors, neighbors, weight)
        torch.testing.assert_close(total, consistency - weight * ent)

    @pytest.mark.parametrize("num_clusters", [2, 5, 10])
    def test_entropy_is_log_k_for_uniform_predictions(self, num_clusters: int):
        anchors = torch.zeros(7, num_clusters, dtype=torch.float64)
        ent = scan_loss(anchors, random_tensor(7, num_clusters, seed=8), 1.0).entropy
        torch.testing.assert_close(ent, as_tensor(math.log(num_clusters)))

    @pytest.mark.parametrize("num_clusters", [2, 5, 10])
    def test_entropy_is_log_k_when_confident_anchors_cover_every_cluster_equally(
        self, num_clusters: int
    ):
        anchors = 50.0 * torch.eye(num_clusters, dtype=torch.float64).repeat(3, 1)
        terms = scan_loss(anchors, anchors.clone(), 2.0)
        torch.testing.assert_close(terms.entropy, as_tensor(math.log(num_clusters)))
        torch.testing.assert_close(terms.consistency, as_tensor(0.0))

    def test_entropy_never_exceeds_log_k_and_vanishes_when_collapsed(self):
        anchors = random_tensor(20, 6, seed=9, scale=3.0)
        assert scan_loss(anchors, anchors, 1.0).entropy <= math.log(6)
        collapsed = torch.zeros(20, 6, dtype=torch.float64)
        collapsed[:, 2] = 50.0
        torch.testing.assert_close(scan_loss(collapsed, collapsed, 1.0).entropy, as_tensor(0.0))

    def test_rejects_mismatched_shapes(self):
        with pytest.raises(ValueError, match="equal shape"):
            scan_loss(torch.randn(4, 3), torch.randn(4, 5), 1.0)

    def test_gradient_matches_finite_differences(self):
        anchors = random_tensor(5, 3, seed=10).requires_grad_()
        neighbors = random_tensor(5, 3, seed=11).requires_grad_()
        assert torch.autograd.gradcheck(
            lambda a, n: scan_loss(a, n, 2.0).total, (anchors, neighbors)
        )


def weak_logits_with(
    labels: list[int],
    confident: list[bool],
    num_clusters: int,
    seed: int,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Weak logits peaked sharply at ``labels`` where ``confident`` and near-flat elsewhere."""
    logits = random_tensor(len(labels), num_clusters, seed=seed, scale=0.1, dtype=dtype)
    for i, (label, sharp) in enumerate(zip(labels, confident, strict=True)):
        if sharp:
            logits[i, label] += 10.0
    return logits


IMBALANCED_LABELS = [0, 0, 0, 0, 0, 1, 1, 2, 0, 1, 3, 0]
CONFIDENCE_CASES = {
    "all": [True] * len(IMBALANCED_LABELS),
    "some": [True, False, True, True, False, True, False, True, True, False, True, False],
    "one": [False] * 5 + [True] + [False] * 6,
}


F32 = torch.float32


class TestConfidenceCrossEntropy:
    @pytest.mark.parametrize("class_balancing", [True, False])
    @pytest.mark.parametrize("case", sorted(CONFIDENCE_CASES))
    def test_matches_loop_reference(self, case: str, class_balancing: bool):
        weak = weak_logits_with(IMBALANCED_LABELS, CONFIDENCE_CASES[case], 4, seed=12)
        strong = random_tensor(len(IMBALANCED_LABELS), 4, seed=13, scale=2.0, dtype=F32)
        loss, mask = confidence_cross_entropy(weak, strong, 0.9, class_balancing)
        expected_loss, expected_mask = naive_confidence_ce(weak, strong, 0.9, class_balancing)
        assert mask.dtype == torch.bool
        assert mask.tolist() == expected_mask == CONFIDENCE_CASES[case]
        torch.testing.assert_close(loss, as_tensor(expected_loss, F32))

    @pytest.mark.parametrize("threshold", [0.0, 0.3, 0.6, 0.95])
    @pytest.mark.parametrize("class_balancing", [True, False])
    def test_matches_loop_reference_on_random_logits(self, threshold: float, class_balancing: bool):
        weak = random_tensor(40, 5, seed=14, scale=3.0, dtype=F32)
        strong = random_tensor(40, 5, seed=15, scale=3.0, dtype=F32)
        loss, mask = confidence_cross_entropy(weak, strong, threshold, class_balancing)
        expected_loss, expected_mask = naive_confidence_ce(weak, strong, threshold, class_balancing)
        assert mask.tolist() == expected_mask
        torch.testing.assert_close(loss, as_tensor(expected_loss, F32))

    def test_class_balancing_changes_the_loss_when_classes_are_imbalanced(self):
        weak = weak_logits_with(IMBALANCED_LABELS, CONFIDENCE_CASES["all"], 4, seed=16)
        strong = random_tensor(len(IMBALANCED_LABELS), 4, seed=17, scale=2.0, dtype=F32)
        balanced, _ = confidence_cross_entropy(weak, strong, 0.9, class_balancing=True)
        plain, _ = confidence_cross_entropy(weak, strong, 0.9, class_balancing=False)
        assert not torch.isclose(balanced, plain)

    @pytest.mark.parametrize("class_balancing", [True, False])
    def test_no_confident_sample_gives_zero_loss_still_in_the_graph(self, class_balancing: bool):
        weak = random_tensor(6, 4, seed=18, scale=0.1, dtype=F32)
        strong = random_tensor(6, 4, seed=19, dtype=F32).requires_grad_()
        loss, mask = confidence_cross_entropy(weak, strong, 0.9, class_balancing)
        assert not mask.any()
        torch.testing.assert_close(loss.detach(), as_tensor(0.0, F32))
        assert loss.requires_grad
        loss.backward()
        torch.testing.assert_close(strong.grad, torch.zeros_like(strong))

    def test_threshold_is_strict(self):
        weak = torch.zeros(3, 2)  # max probability exactly 0.5
        _, mask = confidence_cross_entropy(weak, torch.randn(3, 2), 0.5)
        assert not mask.any()

    def test_weak_logits_get_no_gradient_and_strong_logits_do(self):
        weak = weak_logits_with(IMBALANCED_LABELS, CONFIDENCE_CASES["some"], 4, seed=20)
        weak.requires_grad_()
        strong = random_tensor(len(IMBALANCED_LABELS), 4, seed=21, dtype=F32).requires_grad_()
        loss, mask = confidence_cross_entropy(weak, strong, 0.9)
        loss.backward()
        assert weak.grad is None
        assert torch.isfinite(strong.grad).all()
        assert strong.grad[mask].abs().sum() > 0
        torch.testing.assert_close(strong.grad[~mask], torch.zeros_like(strong[~mask]))

    @pytest.mark.parametrize("class_balancing", [True, False])
    def test_gradient_matches_finite_differences(self, class_balancing: bool):
        weak = weak_logits_with(
            IMBALANCED_LABELS, CONFIDENCE_CASES["some"], 4, seed=22, dtype=torch.float64
        )
        strong = random_tensor(len(IMBALANCED_LABELS), 4, seed=23).requires_grad_()
        assert torch.autograd.gradcheck(
            lambda s: confidence_cross_entropy(weak, s, 0.9, class_balancing)[0], (strong,)
        )

    @pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
    def test_class_balancing_works_for_non_float32_logits(self, dtype: torch.dtype):
        weak = weak_logits_with(
            IMBALANCED_LABELS, CONFIDENCE_CASES["some"], 4, seed=24, dtype=dtype
        )
        strong = random_tensor(len(IMBALANCED_LABELS), 4, seed=25, dtype=dtype)
        loss, _ = confidence_cross_entropy(weak, strong, 0.9, class_balancing=True)
        expected, _ = naive_confidence_ce(weak, strong, 0.9, class_balancing=True)
        assert loss.dtype == dtype
        tolerance = 1e-6 if dtype == torch.float64 else 2e-2
        torch.testing.assert_close(loss, as_tensor(expected, dtype), rtol=tolerance, atol=tolerance)

    def test_rejects_mismatched_shapes(self):
        with pytest.raises(ValueError, match="equal shape"):
            confidence_cross_entropy(torch.randn(4, 3), torch.randn(5, 3), 0.9)


def random_probabilities(
    num_samples: int, num_heads: int, num_clusters: int, seed: int
) -> torch.Tensor:
    logits = random_tensor(num_samples, num_heads, num_clusters, seed=seed, scale=2.0)
    return torch.softmax(logits, dim=2)


def random_neighbors(num_samples: int, k: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for n in range(num_samples):
        others = torch.tensor([i for i in range(num_samples) if i != n])
        rows.append(others[torch.randperm(len(others), generator=generator)[:k]])
    return torch.stack(rows)


class TestScanValidationLosses:
    @pytest.mark.parametrize("weight", [0.0, 1.0, 5.0])
    @pytest.mark.parametrize(
        ("num_samples", "num_heads", "num_clusters", "k"),
        [(4, 1, 2, 1), (12, 3, 4, 3), (30, 2, 6, 5)],
    )
    def test_matches_loop_reference(
        self, num_samples: int, num_heads: int, num_clusters: int, k: int, weight: float
    ):
        probabilities = random_probabilities(num_samples, num_heads, num_clusters, seed=k)
        neighbors = random_neighbors(num_samples, k, seed=num_samples)
        losses = scan_validation_losses(probabilities, neighbors, weight)
        assert losses.shape == (num_heads,)
        expected = naive_scan_validation(probabilities, neighbors, weight)
        torch.testing.assert_close(losses, torch.tensor(expected, dtype=torch.float64))

    def test_single_neighbor_agrees_with_training_scan_loss(self):
        probabilities = random_probabilities(10, 2, 3, seed=24)
        neighbors = random_neighbors(10, 1, seed=25)
        losses = scan_validation_losses(probabilities, neighbors, 2.0)
        for h in range(2):
            log_probs = probabilities[:, h].log()
            expected = scan_loss(log_probs, log_probs[neighbors[:, 0]], 2.0).total
            torch.testing.assert_close(losses[h], expected)

    def test_lowest_loss_goes_to_the_head_whose_neighbors_agree(self):
        num_samples, num_clusters = 12, 3
        neighbors = torch.tensor([[n + 1 if n % 2 == 0 else n - 1] for n in range(num_samples)])
        labels = torch.arange(num_samples) // 2 % num_clusters
        agreeing = torch.nn.functional.one_hot(labels, num_clusters).double() * 0.9 + 0.1 / 3
        shuffled = agreeing[torch.randperm(num_samples, generator=torch.Generator().manual_seed(0))]
        probabilities = torch.stack([shuffled, agreeing], dim=1)
        assert int(scan_validation_losses(probabilities, neighbors, 1.0).argmin()) == 1
