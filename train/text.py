"""Byte-level text from the Python standard library's own source files, as a ``LightningDataModule``.

Every machine with Python has the corpus, so nothing is downloaded: the top-level ``*.py`` files
of ``sysconfig.get_paths()["stdlib"]``, sorted by name, taken in order up to ``max_bytes``; every
``val_every``-th file (by that order) goes to validation, the rest to training, so no file is in
both. Each split is the files' bytes concatenated, cached as a ``uint8`` tensor file under
``cache_dir`` on first use. Training draws random contiguous windows of ``block_size + 1`` bytes
(from a generator seeded by ``(seed, epoch)``, so a resumed run replays the same batches);
validation reads fixed, evenly spaced windows.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import sysconfig
from pathlib import Path
from typing import Iterator, Optional

import lightning as L
import torch
from torch import Tensor

__all__ = ["TextDataModule", "RandomWindows", "FixedWindows", "stdlib_files", "split_files", "unigram_bits", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$MANUAL_AUTOGRAD_CACHE`` if set, else ``~/.cache/manual_autograd``."""
    env = os.environ.get("MANUAL_AUTOGRAD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "manual_autograd"


def stdlib_files(root: Optional[str] = None) -> list[Path]:
    """The top-level ``*.py`` files of the standard library (or of ``root``), sorted by name."""
    return sorted(Path(root or sysconfig.get_paths()["stdlib"]).glob("*.py"))


def split_files(files: list[Path], max_bytes: int, val_every: int) -> tuple[list[Path], list[Path]]:
    """The first files up to ``max_bytes`` in all, every ``val_every``-th of them (from the first) to validation."""
    chosen, total = [], 0
    for f in files:
        if total >= max_bytes:
            break
        chosen.append(f)
        total += f.stat().st_size
    return [f for i, f in enumerate(chosen) if i % val_every], [f for i, f in enumerate(chosen) if not i % val_every]


def unigram_bits(data: Tensor, against: Optional[Tensor] = None) -> float:
    """Entropy in bits per byte of ``data``'s byte distribution; with ``against``, the cross-entropy of
    ``against`` under that distribution (add-one smoothed, so unseen bytes stay finite)."""
    counts = torch.bincount(data.long(), minlength=256).double()
    if against is None:
        p = counts[counts > 0] / counts.sum()
        return float(-(p * p.log2()).sum())
    p = (counts + 1) / (counts.sum() + 256)
    return float(-p.log2()[against.long()].mean())


class RandomWindows:
    """``batches`` batches a epoch of ``batch_size`` random windows of ``block + 1`` bytes: ``(x, y)`` long ids,
    ``y`` shifted by one. The draws depend only on ``(seed, epoch)`` (Lightning calls ``sampler.set_epoch``)."""

    def __init__(self, data: Tensor, block: int, batch_size: int, batches: int, seed: int):
        if len(data) < block + 2:
            raise ValueError(f"RandomWindows: expected more than block_size + 1 = {block + 1} bytes, got {len(data)}")
        self.data, self.block, self.batch_size, self.batches, self.seed, self.epoch = data, block, batch_size, batches, seed, 0
        self.sampler, self.batch_sampler = self, None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        g = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
        span = torch.arange(self.block + 1)
        for _ in range(self.batches):
            start = torch.randint(0, len(self.data) - self.block - 1, (self.batch_size, 1), generator=g)
            w = self.data[start + span].long()
            yield w[:, :-1], w[:, 1:]


class FixedWindows:
    """``count`` windows of ``block + 1`` bytes at evenly spaced offsets, in batches of ``batch_size``."""

    def __init__(self, data: Tensor, block: int, batch_size: int, count: int):
        if len(data) < block + 2:
            raise ValueError(f"FixedWindows: expected more than block_size + 1 = {block + 1} bytes, got {len(data)}")
        n = min(count, (len(data) - 1) // block)
        starts = torch.linspace(0, len(data) - block - 1, n).long()
        self.windows = data[starts.unsqueeze(1) + torch.arange(block + 1)].long()
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.windows) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for i in range(len(self)):
            w = self.windows[i * self.batch_size : (i + 1) * self.batch_size]
            yield w[:, :-1], w[:, 1:]


class TextDataModule(L.LightningDataModule):
    """Bytes of the standard library's source, split by file into training and validation.

    Args:
        block_size: context length (the model's); windows are ``block_size + 1`` bytes
        batch_size: training windows per batch
        eval_batch_size: validation windows per batch
        batches_per_epoch: training batches per epoch (the windows are random, so an epoch is a count)
        val_windows: fixed validation windows (fewer when the split is short)
        max_bytes: stop adding files (in name order) once this many bytes are taken
        val_every: every ``val_every``-th file goes to validation
        root: the source folder; ``None``: ``sysconfig.get_paths()["stdlib"]``
        cache_dir: where the tensor file goes; ``None``: ``$MANUAL_AUTOGRAD_CACHE`` or ``~/.cache/manual_autograd``

    Examples::

        >>> dm = TextDataModule(block_size=64, batch_size=8)
        >>> dm.setup("fit")
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> x.shape, bool((x[:, 1:] == y[:, :-1]).all())
        (torch.Size([8, 64]), True)
    """

    def __init__(
        self,
        block_size: int = 128,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        batches_per_epoch: int = 250,
        val_windows: int = 512,
        max_bytes: int = 2_000_000,
        val_every: int = 10,
        root: Optional[str] = None,
        cache_dir: Optional[str] = None,
    ):
        super().__init__()
        for name, v in (("block_size", block_size), ("batch_size", batch_size), ("eval_batch_size", eval_batch_size),
                        ("batches_per_epoch", batches_per_epoch), ("val_windows", val_windows), ("max_bytes", max_bytes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TextDataModule: expected '{name}' to be a positive integer, got {v!r}")
        if isinstance(val_every, bool) or not isinstance(val_every, int) or val_every < 2:
            raise ValueError(f"TextDataModule: expected 'val_every' to be an integer >= 2, got {val_every!r}")
        self.save_hyperparameters()
        self.block_size, self.batch_size, self.eval_batch_size = block_size, batch_size, eval_batch_size
        self.batches_per_epoch, self.val_windows, self.max_bytes, self.val_every = batches_per_epoch, val_windows, max_bytes, val_every
        self.root = root
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.train = self.val = None
        self.train_files: list[str] = []
        self.val_files: list[str] = []

    def _files(self) -> tuple[list[Path], list[Path]]:
        files = stdlib_files(self.root)
        if not files:
            raise FileNotFoundError(f"TextDataModule: no *.py files in '{self.root or sysconfig.get_paths()['stdlib']}' (set 'data.root')")
        train, val = split_files(files, self.max_bytes, self.val_every)
        if not val or not train:
            raise ValueError(f"TextDataModule: 'max_bytes'={self.max_bytes} takes too few files for a split (val_every={self.val_every})")
        return train, val

    @property
    def cache_file(self) -> Path:
        train, val = self._files()
        key = "\n".join([sys.version, *(f"{f}:{f.stat().st_size}:{i}" for i, f in enumerate(train + val))])
        return self.cache_dir / f"stdlib-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"

    def prepare_data(self) -> None:
        """Write the cache file when it is missing (the bytes of each split, as ``uint8`` tensors)."""
        path = self.cache_file
        if path.is_file():
            return
        train, val = self._files()
        read = lambda fs: torch.frombuffer(bytearray(b"".join(f.read_bytes() for f in fs)), dtype=torch.uint8)  # noqa: E731
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"train": read(train), "val": read(val), "train_files": [f.name for f in train], "val_files": [f.name for f in val]}, tmp)
        tmp.replace(path)  # atomic: a reader never sees half a file

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train is not None:
            return
        self.prepare_data()
        blob = torch.load(self.cache_file)
        self.train, self.val = blob["train"], blob["val"]
        self.train_files, self.val_files = blob["train_files"], blob["val_files"]

    def unigram_bpb(self) -> dict:
        """The unigram baseline: entropy of the training bytes, and the validation bytes' cross-entropy under it."""
        return {"unigram_train_bpb": unigram_bits(self.train), "unigram_val_bpb": unigram_bits(self.train, self.val)}

    def train_dataloader(self):
        seed = int(torch.randint(2**31, ()))  # from the global RNG: `seed_everything` decides it
        return RandomWindows(self.train, self.block_size, self.batch_size, self.batches_per_epoch, seed)

    def val_dataloader(self):
        return FixedWindows(self.val, self.block_size, self.eval_batch_size, self.val_windows)
