"""Lightning DDP, and FSDP2 (``fully_shard``): two CPU processes (gloo) give the gradients and weights of one process.

The MNIST classifier from ``train`` (built from ``manual_autograd.nn``) takes one SGD step on
MNIST-shaped random data, once with ``strategy='ddp_spawn'`` on two processes (8 samples each)
and once in this process (all 16). The distributed sampler hands rank ``r`` samples ``r, r+2, …``
and DDP averages the two ranks' mean-loss gradients, so both runs see the gradient of the mean
loss over the same 16 samples.
"""

import copy

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from train import MNISTClassifier

GLOBAL_BATCH = 16


class _Record(L.Callback):
    """Save each rank's gradients after backward, and its weights after the step, to ``folder``."""

    def __init__(self, folder):
        self.folder = folder

    def _path(self, trainer, what):
        return f"{self.folder}/{what}-{trainer.world_size}-{trainer.global_rank}.pt"

    def on_after_backward(self, trainer, module):  # DDP has all-reduced the gradients by now
        grads = {k: p.grad.clone() for k, p in module.named_parameters()}
        backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else None
        torch.save({"grads": grads, "backend": backend}, self._path(trainer, "grads"))

    def on_train_end(self, trainer, module):
        torch.save({k: p.detach().clone() for k, p in module.named_parameters()}, self._path(trainer, "weights"))


def _fit(model, data, folder, devices):
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        max_steps=1,
        callbacks=[_Record(folder)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(model, DataLoader(data, batch_size=GLOBAL_BATCH // devices, shuffle=False))


def _tolerating_an_abort_at_exit(run, saved):
    """``run()``, except that a spawned rank killed by SIGABRT once every file in ``saved`` is written
    passes: that is torch's C++ teardown at interpreter exit ("terminate called without an active
    exception"), which Lightning's spawned ranks go through; the files are then checked as usual."""
    from torch.multiprocessing import ProcessExitedException

    try:
        run()
    except ProcessExitedException as e:
        if e.signal_name != "SIGABRT" or not all(p.exists() for p in saved):
            raise


def test_ddp_two_processes_equal_one_process(tmp_path):
    torch.manual_seed(0)
    data = TensorDataset(torch.rand(GLOBAL_BATCH, 1, 28, 28), torch.randint(0, 10, (GLOBAL_BATCH,)))
    model = MNISTClassifier(hidden_sizes=[32], activation="gelu", optimizer="sgd", lr=0.5, momentum=0.0,
                            scheduler="constant", label_smoothing=0.1)
    start = {k: p.detach().clone() for k, p in model.named_parameters()}

    _fit(copy.deepcopy(model), data, tmp_path, devices=1)
    saved = [tmp_path / f"{what}-2-{rank}.pt" for what in ("grads", "weights") for rank in (0, 1)]
    _tolerating_an_abort_at_exit(lambda: _fit(copy.deepcopy(model), data, tmp_path, devices=2), saved)

    one = torch.load(tmp_path / "grads-1-0.pt")["grads"]
    for rank in (0, 1):
        record = torch.load(tmp_path / f"grads-2-{rank}.pt")
        assert record["backend"] == "gloo"
        grads = record["grads"]
        weights = torch.load(tmp_path / f"weights-2-{rank}.pt")
        for k in one:
            assert one[k].abs().sum() > 0, k
            torch.testing.assert_close(grads[k], one[k], rtol=1e-5, atol=1e-7, msg=f"rank {rank}: {k}")
            torch.testing.assert_close(weights[k], start[k] - 0.5 * one[k], rtol=1e-5, atol=1e-7)
    single = torch.load(tmp_path / "weights-1-0.pt")
    for k in single:
        torch.testing.assert_close(single[k], start[k] - 0.5 * one[k])


# ------------------------------------------------------------------------------------------------
# FSDP2: parameters sharded over two CPU processes (gloo)


def _fsdp_rank(rank, world, folder):
    import os

    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    # a file rendezvous: no TCP port to pick, so nothing another process can take in between
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    try:
        model = torch.load(f"{folder}/model.pt", weights_only=False)
        x, y = torch.load(f"{folder}/data.pt")
        for layer in model.net:  # each Linear its own FSDP unit, then the root
            if any(True for _ in layer.parameters()):
                fully_shard(layer)
        fully_shard(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        loss = model.loss(model(x[rank::world]), y[rank::world])  # the sampler's split: rank r takes r, r+2, …
        loss.backward()  # reduce-scatter: each rank keeps the mean gradient of its shard
        shards = {k: p.grad.to_local().clone() for k, p in model.named_parameters()}
        grads = {k: p.grad.full_tensor() for k, p in model.named_parameters()}
        opt.step()
        weights = {k: p.full_tensor() for k, p in model.named_parameters()}
        torch.save({"grads": grads, "weights": weights, "shards": shards}, f"{folder}/fsdp-{rank}.pt")
    finally:
        dist.destroy_process_group()
    # Done and saved: leave without the interpreter's teardown, where torch's C++ threads at times
    # abort the process ("terminate called without an active exception") after the work is over.
    os._exit(0)


def test_fsdp2_two_processes_equal_one_process(tmp_path):
    import torch.multiprocessing as mp

    torch.manual_seed(0)
    x, y = torch.rand(GLOBAL_BATCH, 1, 28, 28), torch.randint(0, 10, (GLOBAL_BATCH,))
    model = MNISTClassifier(hidden_sizes=[32], activation="gelu", label_smoothing=0.1)
    torch.save(model, tmp_path / "model.pt")
    torch.save((x, y), tmp_path / "data.pt")

    one = copy.deepcopy(model)
    one.loss(one(x), y).backward()
    grads = {k: p.grad.clone() for k, p in one.named_parameters()}
    with torch.no_grad():
        weights = {k: p - 0.5 * p.grad for k, p in one.named_parameters()}

    mp.spawn(_fsdp_rank, args=(2, str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"fsdp-{rank}.pt")
        for k in grads:
            assert grads[k].abs().sum() > 0, k
            torch.testing.assert_close(got["grads"][k], grads[k], rtol=1e-5, atol=1e-7, msg=f"rank {rank}: grad {k}")
            torch.testing.assert_close(got["weights"][k], weights[k], rtol=1e-5, atol=1e-7, msg=f"rank {rank}: {k}")
        # sharded, not replicated: each rank holds its half of every gradient (dim 0, rows r*n/2…)
        for k, shard in got["shards"].items():
            rows = grads[k].shape[0] // 2
            torch.testing.assert_close(shard, grads[k][rank * rows : (rank + 1) * rows], rtol=1e-5, atol=1e-7)
