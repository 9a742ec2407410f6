"""Training MNIST classifiers built from :mod:`manual_autograd.nn` with Lightning.

* :mod:`train.model` — :func:`build_mlp` and the :class:`MNISTClassifier` LightningModule;
* :mod:`train.data` — the :class:`MNISTDataModule` (torchvision MNIST, preloaded tensor batches);
* :mod:`train.cli` — the LightningCLI behind ``python -m train fit --config configs/mnist.yaml``.
"""

from .cli import EpochTimer, MNISTCLI, main, plot_curves
from .data import MNISTDataModule, TensorBatches
from .model import MNISTClassifier, build_mlp

__all__ = ["MNISTClassifier", "MNISTDataModule", "TensorBatches", "build_mlp", "EpochTimer", "MNISTCLI", "main", "plot_curves"]
