"""linear_cross_entropy's block kernels against the reference's torch ops (fused.py)."""

import math

import pytest
import torch

from kernel_cases import CPU_DTYPES, DEVICES, K, close

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy under the interpreter, on NaN/inf


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", CPU_DTYPES)
def test_softmax_scale_equals_the_three_passes(device, dtype):
    buf = torch.randn(23 * 40, dtype=dtype, device=device) * 5
    blk = buf[: 23 * 37].view(23, 37)
    blk[0, 0], blk[1, 1] = float("inf"), -float("inf")
    lse, r = blk.logsumexp(1), torch.randn(23, dtype=dtype, device=device)
    expected = blk.sub(lse.unsqueeze(1)).exp().mul(r.unsqueeze(1))
    assert K.linear_cross_entropy.softmax_scale_(blk, lse, r) is blk
    close(blk, expected)
    wide = torch.randn(40, 23, dtype=dtype, device=device)[:, :17]  # rows with a stride of 23
    expected = wide.exp()
    K.linear_cross_entropy.softmax_scale_(wide, torch.zeros(40, dtype=dtype, device=device), torch.ones(40, dtype=dtype, device=device))
    close(wide, expected)


def _reference_update(blk, t, c0, lse, z_t, z_sum, cw):
    """fused.py's forward step, on copies."""
    width = blk.shape[1]
    inside = (t >= c0) & (t < c0 + width)
    picked = blk.gather(1, (t - c0).clamp(0, width - 1).unsqueeze(1)).squeeze(1)
    z_t = z_t + torch.where(inside, picked, 0.0)
    if z_sum is not None:
        z_sum = z_sum + (blk.sum(1) if cw is None else blk.matmul(cw[c0 : c0 + width]))
    m = blk.amax(1, keepdim=True).nan_to_num(neginf=0.0)
    part = blk.sub(m).exp().sum(1).log().add(m.squeeze(1))
    return torch.logaddexp(lse, part), z_t, z_sum


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("smooth", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_block_update_equals_the_reference(device, dtype, smooth, weighted):
    rows, C, chunk = 19, 2500, 1100  # three blocks, the last partial; a block wider than 1024
    x = torch.randn(rows, C, dtype=dtype, device=device) * 4
    x[0, :1200] = -float("inf")  # a row whose first block is all -inf
    t = torch.randint(0, C, (rows,), device=device)
    cw = torch.rand(C, dtype=dtype, device=device) if weighted else None
    state = [torch.full((rows,), -math.inf, dtype=dtype, device=device), torch.zeros(rows, dtype=dtype, device=device)]
    state.append(torch.zeros(rows, dtype=dtype, device=device) if smooth else None)
    ref = [s.clone() if s is not None else None for s in state]
    for c0 in range(0, C, chunk):
        blk = x[:, c0 : c0 + chunk]
        before = blk.clone()
        out = K.linear_cross_entropy.block_update_(blk, t, c0, *state, class_weight=cw)
        assert all(o is s for o, s in zip(out, state))  # in place
        assert torch.equal(blk, before)  # the block is only read
        ref = list(_reference_update(blk, t, c0, *ref, cw))
    close(state[0], x.logsumexp(1))
    tol = {"rtol": 1e-5, "atol": 1e-4} if dtype == torch.float32 else {}  # sums of 2500 logits, in another order
    for ours, theirs in zip(state, ref):
        if ours is not None:
            close(ours, theirs, **tol)


@pytest.mark.parametrize("device", DEVICES)
def test_block_update_keeps_very_negative_rows_finite(device):
    # every first chunk starts from lse = -inf: a row of logits far below 0 must not underflow
    rows, C, chunk = 4, 3000, 1100
    x = torch.full((rows, C), -120.0, dtype=torch.float32, device=device)
    x[1] = torch.linspace(-400.0, -110.0, C)
    x[2, :1100] = -float("inf")
    t = torch.tensor([5, 2999, 1500, 0], device=device)
    lse, z_t = torch.full((rows,), -math.inf, device=device), torch.zeros(rows, device=device)
    for c0 in range(0, C, chunk):
        K.linear_cross_entropy.block_update_(x[:, c0 : c0 + chunk], t, c0, lse, z_t)
    close(lse, x.double().logsumexp(1).float())
    close(z_t, x.gather(1, t.unsqueeze(1)).squeeze(1))
