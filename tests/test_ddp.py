"""Lightning DDP: two CPU processes (gloo) give the gradients of one process on the same global batch.

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


def test_ddp_two_processes_equal_one_process(tmp_path):
    torch.manual_seed(0)
    data = TensorDataset(torch.rand(GLOBAL_BATCH, 1, 28, 28), torch.randint(0, 10, (GLOBAL_BATCH,)))
    model = MNISTClassifier(hidden_sizes=[32], activation="gelu", optimizer="sgd", lr=0.5, momentum=0.0,
                            scheduler="constant", label_smoothing=0.1)
    start = {k: p.detach().clone() for k, p in model.named_parameters()}

    _fit(copy.deepcopy(model), data, tmp_path, devices=1)
    _fit(copy.deepcopy(model), data, tmp_path, devices=2)

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
