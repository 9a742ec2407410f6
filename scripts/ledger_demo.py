"""Print the ledger of one MNIST training step: the library's MLP next to the same native one.

    python scripts/ledger_demo.py [--config configs/mnist.yaml] [--batch-size N] [--activation gelu]

The architecture (``model.hidden_sizes``, ``model.activation``) and the batch size
(``data.batch_size``) come from the config when it exists, else 784-128-10 with ReLU and 256.
The batch is real MNIST when the files are at ``$MNIST_ROOT`` or ``../shared/data`` (shapes are
all that matter to the ledger, so random pixels otherwise).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from torch import nn

import manual_autograd as ma

REPO = Path(__file__).resolve().parent.parent
def read_config(path: Path) -> dict:
    if not path.exists():
        return {}
    import yaml  # a dependency of jsonargparse, which the training CLI uses

    with open(path) as f:
        return yaml.safe_load(f) or {}


def mnist_batch(n: int):
    root = Path(os.environ.get("MNIST_ROOT", REPO.parent / "shared" / "data"))
    if (root / "MNIST" / "raw").is_dir():
        from torchvision import datasets

        ds = datasets.MNIST(root, train=True, download=False)
        x = (ds.data[:n].float() / 255 - 0.1307) / 0.3081
        return x.flatten(1), ds.targets[:n].clone(), "real MNIST"  # a batch owns its storage, as from a DataLoader
    return torch.randn(n, 784), torch.randint(0, 10, (n,)), "random pixels (MNIST files not found)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=REPO / "configs" / "mnist.yaml")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--activation", choices=sorted(ma.nn.ACTIVATIONS), default=None, help="override the config's")
    args = p.parse_args()

    cfg = read_config(args.config)
    model_cfg, data_cfg = cfg.get("model", {}) or {}, cfg.get("data", {}) or {}
    hidden = model_cfg.get("hidden_sizes", [128])
    activation = args.activation or model_cfg.get("activation", "relu")
    batch = args.batch_size or data_cfg.get("batch_size", 256)
    sizes = [784, *hidden, 10]
    x, y, source = mnist_batch(batch)
    where = args.config.relative_to(REPO) if args.config.exists() and args.config.is_relative_to(REPO) else args.config
    print(f"MLP {'-'.join(map(str, sizes))} ({activation}), batch {batch} of {source}, "
          f"architecture from {where if cfg else 'the default (no config found)'}\n")

    totals = {}
    for manual in (True, False):
        torch.manual_seed(0)
        model = ma.nn.build_mlp(sizes, activation, "manual" if manual else "torch")
        loss_fn = ma.nn.CrossEntropyLoss() if manual else nn.CrossEntropyLoss()
        with ma.ledger(model, loss_fn) as led:
            loss = loss_fn(model(x), y)
        loss.backward()  # the ledger is settled
        name = "manual_autograd.nn" if manual else "torch.nn"
        print(f"== {name} ==")
        print(led)
        print()
        totals[name] = led
    a, b = totals["manual_autograd.nn"], totals["torch.nn"]
    print(f"unique saved bytes: manual_autograd.nn {a.unique_bytes:,} vs torch.nn {b.unique_bytes:,} "
          f"({a.unique_bytes / b.unique_bytes:.3f}x); saved tensors {len(a)} vs {len(b)}")


if __name__ == "__main__":
    main()
