"""MNIST as a ``LightningDataModule``: torchvision's files, a fixed-seed split, two ways to serve batches.

* ``preload: true`` (the default) reads the files once through :class:`torchvision.datasets.MNIST`,
  normalises all 70 000 images in one tensor op and moves them to the training device; shuffled
  batches are then sliced from there by :class:`TensorBatches`, with no DataLoader workers and no
  per-item Python. For an MLP this is what keeps the accelerator (or the CPU) busy. Under DDP each
  rank serves its shard of every split, as Lightning's ``DistributedSampler`` would.
* ``preload: false`` is the textbook path: ``ToTensor`` + ``Normalize`` per item through a
  :class:`torch.utils.data.DataLoader` with ``num_workers`` workers.

Both paths see the same images in the same split and the same normalisation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Optional

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

__all__ = ["MNISTDataModule", "TensorBatches", "EpochPermutation", "default_root", "MEAN", "STD"]

MEAN, STD = 0.1307, 0.3081  # the training set's pixel mean and standard deviation (in [0, 1])
REPO = Path(__file__).resolve().parent.parent
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def default_root() -> Path:
    """``$MNIST_ROOT`` if set, else ``../shared/data`` beside the repository (where a fresh clone finds it)."""
    env = os.environ.get("MNIST_ROOT")
    return Path(env).expanduser() if env else (REPO.parent / "shared" / "data").resolve()


class EpochPermutation:
    """A reproducible shuffle: the order of epoch ``e`` depends only on ``(seed, e)``.

    Lightning calls :meth:`set_epoch` at the start of every epoch (it looks for a ``sampler`` with a
    ``set_epoch`` method), so a run resumed from a checkpoint replays the same orders.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def permutation(self) -> Tensor:
        g = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
        return torch.randperm(self.n, generator=g)

    def __iter__(self) -> Iterator[int]:
        return iter(self.permutation().tolist())

    def __len__(self) -> int:
        return self.n


class TensorBatches:
    """Mini-batches sliced from an ``(N, ...)`` input tensor and its ``(N,)`` targets, on their device.

    Args:
        x: inputs, already normalised and on the device batches should land on
        y: class indices
        batch_size: rows per batch (the last batch is smaller unless ``drop_last``)
        shuffle: draw a new permutation each epoch (from ``seed`` and the epoch number)
        seed: base seed of the permutations
        drop_last: drop the last, incomplete batch
        num_replicas: processes the data is split over (the world size under DDP). Default: 1
        rank: this process's shard, in ``[0, num_replicas)``. Default: 0

    With ``num_replicas > 1`` each process takes its shard of every epoch's order as
    :class:`torch.utils.data.DistributedSampler` does (Lightning adds that sampler to a DataLoader,
    not to this): the order (the same permutation on every rank, from ``seed`` and the epoch) is
    padded by repeating its start to a multiple of ``num_replicas``, and rank ``r`` takes entries
    ``r, r + num_replicas, …``, so every rank has as many batches and together they cover the split
    once. With one replica the batches are those of no sharding at all.

    Examples::

        >>> batches = TensorBatches(torch.randn(10, 784), torch.zeros(10, dtype=torch.long), 4)
        >>> [len(y) for x, y in batches]
        [4, 4, 2]
    """

    def __init__(
        self, x: Tensor, y: Tensor, batch_size: int, shuffle: bool = False, seed: int = 0, drop_last: bool = False,
        num_replicas: int = 1, rank: int = 0,
    ):
        if len(x) != len(y):
            raise ValueError(f"TensorBatches: expected 'x' and 'y' of the same length, got {len(x)} and {len(y)}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"TensorBatches: expected 0 <= 'rank' < 'num_replicas' ({num_replicas}), got {rank}")
        self.x, self.y, self.batch_size, self.shuffle, self.drop_last = x, y, batch_size, shuffle, drop_last
        self.num_replicas, self.rank = num_replicas, rank
        # `sampler.set_epoch` is what Lightning calls each epoch; there is no batch sampler
        self.sampler = EpochPermutation(len(y), seed) if shuffle else None
        self.batch_sampler = None

    def _rows(self) -> int:
        """Rows this rank serves per epoch (its padded shard)."""
        return -(-len(self.y) // self.num_replicas)

    def _shard(self, order: Tensor) -> Tensor:
        total = self._rows() * self.num_replicas
        if total > len(order) > 0:  # pad with the order's start, as DistributedSampler does
            order = order.repeat(-(-total // len(order)))[:total]
        return order[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        n, b = self._rows(), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        b = self.batch_size
        if self.sampler is None and self.num_replicas == 1:  # contiguous slices are views: no copy at all
            for i in range(len(self)):
                yield self.x[i * b : (i + 1) * b], self.y[i * b : (i + 1) * b]
            return
        order = self.sampler.permutation() if self.sampler is not None else torch.arange(len(self.y))
        if self.num_replicas > 1:
            order = self._shard(order)
        order = order.to(self.x.device, non_blocking=True)
        for i in range(len(self)):
            idx = order[i * b : (i + 1) * b]
            yield self.x[idx], self.y[idx]


class MNISTDataModule(L.LightningDataModule):
    """MNIST from :class:`torchvision.datasets.MNIST`: 55 000 / 5 000 train / validation split, 10 000 test.

    Args:
        root: torchvision data root (the files live in ``root/MNIST/raw``). Default: ``$MNIST_ROOT``,
            else ``../shared/data`` beside the repository
        batch_size: training batch size
        eval_batch_size: batch size for validation, test and predict
        val_size: images of the 60 000 training images held out for validation
        split_seed: seed of the train/validation split (fixed, independent of the run's seed)
        preload: normalise the whole dataset once and serve batches from one tensor on the training
            device (no DataLoader); ``false`` uses torchvision transforms and a DataLoader
        num_workers: DataLoader workers (``preload: false`` only)
        download: download the files when they are missing (needs the internet)

    Examples::

        >>> dm = MNISTDataModule(batch_size=256)
        >>> dm.prepare_data(); dm.setup("fit")
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> x.shape, y.shape
        (torch.Size([256, 784]), torch.Size([256]))
    """

    def __init__(
        self,
        root: Optional[str] = None,
        batch_size: int = 512,
        eval_batch_size: int = 2000,
        val_size: int = 5000,
        split_seed: int = 0,
        preload: bool = True,
        num_workers: int = 0,
        download: bool = True,
    ):
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MNISTDataModule: expected '{name}' to be a positive integer, got {value!r}")
        if isinstance(val_size, bool) or not isinstance(val_size, int) or val_size < 1:
            raise ValueError(f"MNISTDataModule: expected 'val_size' to be a positive integer, got {val_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"MNISTDataModule: expected 'num_workers' to be an integer >= 0, got {num_workers!r}")
        self.save_hyperparameters()
        self.root = Path(root).expanduser() if root else default_root()
        self.batch_size, self.eval_batch_size, self.val_size, self.split_seed = batch_size, eval_batch_size, val_size, split_seed
        self.preload, self.num_workers, self.download = preload, num_workers, download
        self.train = self.val = self.test = None

    # ----------------------------------------------------------------------------------------
    # files

    @property
    def raw_dir(self) -> Path:
        return self.root / "MNIST" / "raw"

    def missing_files(self) -> list[str]:
        return [f for f in RAW_FILES if not (self.raw_dir / f).is_file()]

    def prepare_data(self) -> None:
        """Check the files (downloading them when allowed); raise ``FileNotFoundError`` saying what goes where."""
        missing = self.missing_files()
        if not missing:
            return
        error = None
        if self.download:
            try:
                for train in (True, False):
                    datasets.MNIST(self.root, train=train, download=True)
                return
            except Exception as e:  # offline, proxy, checksum: all end in the same advice
                error = e
        raise FileNotFoundError(
            f"MNIST not found: missing {', '.join(missing)} in '{self.raw_dir}'. "
            + ("Download failed" + (f" ({type(error).__name__}: {error}). " if error else ". ") if self.download else "")
            + f"Put the four uncompressed files {', '.join(RAW_FILES)} in '{self.raw_dir}' "
            "(the layout torchvision.datasets.MNIST expects), or point 'data.root' (or the MNIST_ROOT "
            "environment variable) at the folder that contains 'MNIST/raw'"
            + ("." if self.download else ", or set 'data.download: true' on a machine with internet access.")
        ) from error

    # ----------------------------------------------------------------------------------------
    # splits

    def _split(self, n: int) -> tuple[Tensor, Tensor]:
        if self.val_size >= n:
            raise ValueError(f"MNISTDataModule: expected 'val_size' < {n} training images, got {self.val_size}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        return perm[: n - self.val_size], perm[n - self.val_size :]

    def _device(self) -> torch.device:
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def setup(self, stage: Optional[str] = None) -> None:
        self.prepare_data()  # cheap when the files are there; catches a wrong root on every rank
        if self.preload:
            self._setup_tensors(stage)
        else:
            self._setup_datasets(stage)

    def _setup_tensors(self, stage: Optional[str]) -> None:
        device = self._device()
        # tensors loaded earlier (e.g. before a Trainer was attached) follow the training device
        for name in ("train", "val", "test"):
            held = getattr(self, name)
            if held is not None and held[0].device != device:
                setattr(self, name, tuple(t.to(device) for t in held))

        def load(train: bool) -> tuple[Tensor, Tensor]:
            ds = datasets.MNIST(self.root, train=train, download=False)
            x = ds.data.to(device).reshape(len(ds.data), -1).float().div_(255.0).sub_(MEAN).div_(STD)
            return x, ds.targets.to(device)

        if stage in (None, "fit", "validate") and self.train is None:
            x, y = load(True)
            train_idx, val_idx = (i.to(device) for i in self._split(len(y)))
            self.train, self.val = (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])
        if stage in (None, "test", "predict") and self.test is None:
            self.test = load(False)

    def _setup_datasets(self, stage: Optional[str]) -> None:
        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
        if stage in (None, "fit", "validate") and self.train is None:
            full = datasets.MNIST(self.root, train=True, transform=tf, download=False)
            train_idx, val_idx = self._split(len(full))
            self.train, self.val = Subset(full, train_idx.tolist()), Subset(full, val_idx.tolist())
        if stage in (None, "test", "predict") and self.test is None:
            self.test = datasets.MNIST(self.root, train=False, transform=tf, download=False)

    # ----------------------------------------------------------------------------------------
    # loaders

    def _loader(self, data, batch_size: int, shuffle: bool):
        if self.preload:
            # the shuffle seed comes from the global RNG, so `seed_everything` decides it
            seed = int(torch.randint(2**31, ())) if shuffle else 0
            trainer, replicas, rank = self.trainer, 1, 0
            if trainer is not None and trainer.world_size > 1 and getattr(
                trainer._accelerator_connector, "use_distributed_sampler", True
            ):
                # each rank its shard of the same order (rank 0's seed), as Lightning's DistributedSampler
                replicas, rank = trainer.world_size, trainer.global_rank
                seed = trainer.strategy.broadcast(seed) if shuffle else seed
            return TensorBatches(*data, batch_size, shuffle=shuffle, seed=seed, num_replicas=replicas, rank=rank)
        return DataLoader(
            data,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self._device().type == "cuda",
        )

    def train_dataloader(self):
        return self._loader(self.train, self.batch_size, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.val, self.eval_batch_size, shuffle=False)

    def test_dataloader(self):
        return self._loader(self.test, self.eval_batch_size, shuffle=False)

    def predict_dataloader(self):
        return self._loader(self.test, self.eval_batch_size, shuffle=False)
