"""Two gloo processes on CPU compute what one process computes on the whole batch.

Batch-norm statistics, SCAN's entropy term and self-labeling's class weights depend on the
batch; under DDP each process holds half of it. With :class:`SyncBatchNorm` and the losses'
``across_processes`` the outputs, losses and DDP-averaged gradients of two processes must
equal those of one process over the whole batch. The same comparison without them must
fail, which shows the check can tell the difference.
"""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from semclust.losses import confidence_cross_entropy, scan_loss
from semclust.models.sync_batchnorm import CpuSyncBatchNorm, convert_batchnorm, revert_batchnorm
from semclust.stages.sync_batchnorm import SyncBatchNormPlugin

WORLD = 2
BATCH = 12  # global; each process holds BATCH // WORLD rows


def full_batch(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(BATCH, *shape, generator=torch.Generator().manual_seed(seed)) * 3 + 1


def my_rows(tensor: torch.Tensor, rank: int) -> torch.Tensor:
    share = BATCH // WORLD
    return tensor[rank * share : (rank + 1) * share]


def ddp_gradient(local: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """The gradient of DDP's objective (the mean of the processes' losses) on ``local``."""
    (grad,) = torch.autograd.grad(loss, local)
    return grad / WORLD


def check_batchnorm(rank: int) -> None:
    images = full_batch(0, 3, 4, 4)
    weights = full_batch(1, 3, 4, 4)
    reference = nn.BatchNorm2d(3)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(2))
        reference.bias.uniform_(-1, 1, generator=torch.Generator().manual_seed(3))
    synced = convert_batchnorm(nn.Sequential(reference_copy(reference)))[0]
    assert isinstance(synced, CpuSyncBatchNorm)

    whole = images.clone().requires_grad_(True)
    expected = reference(whole)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), whole)

    local = my_rows(images, rank).clone().requires_grad_(True)
    output = synced(local)
    local_loss = (output * my_rows(weights, rank)).sum() * WORLD  # DDP averages: undo it
    torch.testing.assert_close(output, my_rows(expected, rank).detach())
    torch.testing.assert_close(ddp_gradient(local, local_loss), my_rows(expected_grad, rank))
    weight_grad = torch.autograd.grad(
        (synced(local) * my_rows(weights, rank)).sum(), synced.weight
    )[0]
    dist.all_reduce(weight_grad)
    reference.zero_grad()
    (reference(images) * weights).sum().backward()
    torch.testing.assert_close(weight_grad, reference.weight.grad)
    torch.testing.assert_close(synced.running_mean, reference.running_mean)
    torch.testing.assert_close(synced.running_var, reference.running_var)

    unsynced = nn.BatchNorm2d(3)  # the planted difference: per-process statistics
    assert not torch.allclose(unsynced(my_rows(images, rank)), my_rows(expected, rank).detach())


def reference_copy(module: nn.BatchNorm2d) -> nn.BatchNorm2d:
    copy = nn.BatchNorm2d(module.num_features)
    copy.load_state_dict(module.state_dict())
    return copy


def check_scan_loss(rank: int) -> None:
    anchors, neighbors = full_batch(4, 5), full_batch(5, 5)
    whole = anchors.clone().requires_grad_(True)
    expected = scan_loss(whole, neighbors, entropy_weight=5.0)
    (expected_grad,) = torch.autograd.grad(expected.total, whole)

    local = my_rows(anchors, rank).clone().requires_grad_(True)
    terms = scan_loss(local, my_rows(neighbors, rank), 5.0, across_processes=True)
    torch.testing.assert_close(terms.entropy, expected.entropy)
    mean_total = terms.total.detach().clone()
    dist.all_reduce(mean_total)
    torch.testing.assert_close(mean_total / WORLD, expected.total.detach())
    torch.testing.assert_close(ddp_gradient(local, terms.total), my_rows(expected_grad, rank))

    alone = scan_loss(my_rows(anchors, rank), my_rows(neighbors, rank), 5.0)
    assert not torch.allclose(alone.entropy, expected.entropy)


def check_selflabel_loss(rank: int, class_balancing: bool) -> None:
    # Confident rows are spread unevenly: the first process holds all six of its rows'
    # confident, the second at most three (flat logits are confident nowhere).
    weak = full_batch(6, 4) * 4
    weak[: BATCH // 2, 0] += 30
    weak[BATCH // 2 : BATCH // 2 + 3] = 0
    strong = full_batch(7, 4)
    whole = strong.clone().requires_grad_(True)
    expected, _ = confidence_cross_entropy(weak, whole, 0.9, class_balancing)
    (expected_grad,) = torch.autograd.grad(expected, whole)

    local = my_rows(strong, rank).clone().requires_grad_(True)
    loss, _ = confidence_cross_entropy(
        my_rows(weak, rank), local, 0.9, class_balancing, across_processes=True
    )
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    torch.testing.assert_close(mean_loss / WORLD, expected.detach())
    torch.testing.assert_close(ddp_gradient(local, loss), my_rows(expected_grad, rank))

    # Without across_processes each process averages its own confident rows (and weighs
    # its own classes): uneven counts make the mean of those means another number.
    alone, _ = confidence_cross_entropy(
        my_rows(weak, rank), my_rows(strong, rank), 0.9, class_balancing
    )
    shared = torch.tensor([alone.item()])
    dist.all_reduce(shared)
    assert not torch.allclose(shared / WORLD, expected.detach().reshape(1))


def worker(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.set_default_dtype(torch.float64)  # compare sums, not rounding
        check_batchnorm(rank)
        check_scan_loss(rank)
        check_selflabel_loss(rank, class_balancing=True)
        check_selflabel_loss(rank, class_balancing=False)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch built without torch.distributed")
def test_two_processes_compute_the_whole_batch_quantities():
    mp.spawn(worker, args=(free_port(),), nprocs=WORLD, join=True)


def test_one_process_is_unchanged():
    """Outside a process group the synced layer is plain batch norm."""
    images = full_batch(0, 3, 4, 4)
    plain = nn.BatchNorm2d(3)
    synced = convert_batchnorm(nn.Sequential(reference_copy(plain)))[0]
    torch.testing.assert_close(synced(images), plain(images))
    torch.testing.assert_close(synced.running_var, plain.running_var)


def test_reverting_restores_the_layers_with_their_trained_state():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Flatten(), nn.BatchNorm1d(64))
    model(full_batch(0, 3, 4, 4))  # running statistics that are not the initial ones
    state = {name: value.clone() for name, value in model.state_dict().items()}
    converted = convert_batchnorm(model)
    assert [type(m) for m in converted if isinstance(m, CpuSyncBatchNorm)] == [CpuSyncBatchNorm] * 2
    reverted = revert_batchnorm(converted)
    assert [type(m) for m in reverted] == [nn.Conv2d, nn.BatchNorm2d, nn.Flatten, nn.BatchNorm1d]
    for name, value in reverted.state_dict().items():
        torch.testing.assert_close(value, state[name])


def test_the_lightning_plugin_uses_the_cpu_layer_on_cpu_and_reverts_it():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    plugin = SyncBatchNormPlugin()
    applied = plugin.apply(model)
    assert isinstance(applied[1], CpuSyncBatchNorm)
    assert type(plugin.revert(applied)[1]) is nn.BatchNorm2d
