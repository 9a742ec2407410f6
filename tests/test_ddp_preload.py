"""DDP with ``preload: true``: ``TensorBatches`` is not a DataLoader, so Lightning adds no
DistributedSampler; each rank must serve its own shard of every epoch's order (two CPU processes,
gloo), and one process must see exactly the batches it always did."""

import lightning as L
import torch

from tests.test_ddp import _tolerating_an_abort_at_exit
from train.data import EpochPermutation, MNISTDataModule, TensorBatches

N_TRAIN, N_VAL, BATCH, EPOCHS = 20, 7, 3, 2


class _Preloaded(MNISTDataModule):
    """The MNIST data module on tensors whose one feature is the row's index (no files needed)."""

    def __init__(self):
        super().__init__(batch_size=BATCH, eval_batch_size=2, val_size=1)
        idx = torch.arange(N_TRAIN + N_VAL, dtype=torch.float32).unsqueeze(1)
        self.train = (idx[:N_TRAIN], torch.zeros(N_TRAIN, dtype=torch.long))
        self.val = (idx[N_TRAIN:], torch.zeros(N_VAL, dtype=torch.long))

    def prepare_data(self):
        pass


class _Seen(L.LightningModule):
    """Records the row indices each rank is handed, per epoch, and saves them at the end of fit."""

    def __init__(self, folder):
        super().__init__()
        self.folder, self.layer = folder, torch.nn.Linear(1, 1)
        self.seen = {"train": {}, "val": {}}

    def _record(self, split, batch):
        self.seen[split].setdefault(self.current_epoch, []).append(batch[0][:, 0].long().tolist())

    def training_step(self, batch, idx):
        self._record("train", batch)
        return self.layer(batch[0]).square().mean()

    def validation_step(self, batch, idx):
        self._record("val", batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def on_train_end(self):
        torch.save(self.seen, f"{self.folder}/seen-{self.trainer.world_size}-{self.global_rank}.pt")


def _fit(folder, devices):
    L.seed_everything(3, verbose=False)
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto", max_epochs=EPOCHS,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(_Seen(folder), datamodule=_Preloaded())


def test_two_ranks_see_disjoint_shards_of_each_epoch(tmp_path):
    saved = [tmp_path / f"seen-2-{r}.pt" for r in (0, 1)]
    _tolerating_an_abort_at_exit(lambda: _fit(tmp_path, 2), saved)
    ranks = [torch.load(p) for p in saved]
    orders = []
    for epoch in range(EPOCHS):
        train = [sum(r["train"][epoch], []) for r in ranks]
        assert [len(b) for b in ranks[0]["train"][epoch]] == [len(b) for b in ranks[1]["train"][epoch]]  # equal batches
        assert set(train[0]).isdisjoint(train[1]), f"epoch {epoch}: both ranks trained on the same rows"
        assert sorted(train[0] + train[1]) == list(range(N_TRAIN))  # the whole split, once
        orders.append(train)
        # validation: an odd split is padded (one row twice), as DistributedSampler pads
        val = [sum(r["val"][epoch], []) for r in ranks]
        assert len(val[0]) == len(val[1]) == (N_VAL + 1) // 2
        assert set(val[0] + val[1]) == set(range(N_TRAIN, N_TRAIN + N_VAL))
    assert orders[0] != orders[1]  # a new shuffle each epoch


def test_one_process_batches_unchanged():
    """One replica: the batches of the order itself (what TensorBatches gave before sharding existed)."""
    x, y = torch.randn(11, 3), torch.arange(11)
    for shuffle in (False, True):
        batches = TensorBatches(x, y, 4, shuffle=shuffle, seed=5)
        batches.sampler is None or batches.sampler.set_epoch(2)
        order = EpochPermutation(11, 5 + 0) if shuffle else None
        if order is not None:
            order.set_epoch(2)
        idx = order.permutation() if shuffle else torch.arange(11)
        got = list(batches)
        assert len(got) == len(batches) == 3
        for i, (bx, by) in enumerate(got):
            assert torch.equal(by, y[idx[4 * i : 4 * i + 4]]) and torch.equal(bx, x[idx[4 * i : 4 * i + 4]])


def test_shards_pad_as_distributed_sampler():
    y = torch.arange(10)
    sampler = torch.utils.data.DistributedSampler(range(10), num_replicas=3, rank=0, shuffle=False)
    shards = []
    for rank in range(3):
        sampler.rank = rank
        b = TensorBatches(y.unsqueeze(1), y, 3, num_replicas=3, rank=rank)
        got = torch.cat([by for _, by in b]).tolist()
        assert got == list(sampler) and len(b) == 2
        shards.append(got)
    assert sorted(sum(shards, [])) == sorted(list(range(10)) + [0, 1])
