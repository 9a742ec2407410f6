"""Activation checkpointing (use_reentrant=False) around a block of library layers.

The block's forward runs again during backward, so gradients must be the same, and what is kept
for backward (everything autograd packs, seen through saved_tensors_hooks) must shrink to what
the layers outside the block keep.
"""

import pytest
import torch
from helpers import record_saved
from torch.utils.checkpoint import checkpoint

from manual_autograd import nn as mnn


def _parts():
    torch.manual_seed(0)
    block = torch.nn.Sequential(
        mnn.Linear(32, 128), mnn.GELU(), mnn.Linear(128, 128), mnn.SiLU(), mnn.LeakyReLU(-0.1), mnn.Linear(128, 32),
        mnn.ReLU(),
    )
    return block, mnn.Linear(32, 10), mnn.CrossEntropyLoss(label_smoothing=0.1)


def _saved_bytes(saved):
    # distinct storages: a tensor saved twice (a ReLU output the next Linear also keeps) counts once
    return sum({s.data_ptr: s.storage_nbytes for s in saved}.values())


def _run(block, head, loss_fn, x, y, ckpt):
    for p in (*block.parameters(), *head.parameters()):
        p.grad = None
    x = x.detach().clone().requires_grad_(x.requires_grad)
    with record_saved() as saved:
        h = checkpoint(block, x, use_reentrant=False) if ckpt else block(x)
        loss = loss_fn(head(h), y)
    loss.backward()
    grads = [p.grad for p in (*block.parameters(), *head.parameters())] + ([x.grad] if x.requires_grad else [])
    return loss, grads, _saved_bytes(saved)


@pytest.mark.parametrize("x_grad", [False, True], ids=["x-no-grad", "x-grad"])
def test_checkpoint_same_grads_less_saved(x_grad):
    block, head, loss_fn = _parts()
    x, y = torch.randn(64, 32).requires_grad_(x_grad), torch.randint(0, 10, (64,))
    loss, grads, plain = _run(block, head, loss_fn, x, y, ckpt=False)
    loss_c, grads_c, kept = _run(block, head, loss_fn, x, y, ckpt=True)
    torch.testing.assert_close(loss_c, loss, rtol=0, atol=0)
    for g, gc in zip(grads, grads_c):
        torch.testing.assert_close(gc, g, rtol=0, atol=0)  # the recompute is the same computation

    # with checkpointing, the block keeps only its input (to recompute from); the head and the
    # loss keep exactly what they keep alone
    with torch.no_grad():
        h = block(x).requires_grad_()
    with record_saved() as saved:
        loss_fn(head(h), y)
    assert kept == _saved_bytes(saved) + x.numel() * x.element_size()
    assert plain > 4 * kept  # the block keeps several (64, 128) activations without checkpointing
    print(f"kept for backward: {plain} bytes plain, {kept} bytes with checkpoint")
