"""train/ on the real MNIST files (``$MNIST_ROOT``, default ``../shared/data`` beside the checkout).

Without the files these tests skip on a developer machine and fail in CI (``CI`` set), where a
missing data set is a broken setup, not a reason to test less.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from train import MNISTDataModule, main
from train.data import MEAN, STD, default_root

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mnist_root() -> Path:
    dm = MNISTDataModule(download=False)
    missing = dm.missing_files()
    if missing:
        message = (
            f"real MNIST missing in '{dm.raw_dir}' ({', '.join(missing)}); "
            "set MNIST_ROOT to the folder holding MNIST/raw"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return dm.root


def test_default_root_is_beside_the_checkout(monkeypatch):
    monkeypatch.delenv("MNIST_ROOT", raising=False)
    assert default_root() == (REPO.parent / "shared" / "data").resolve()
    monkeypatch.setenv("MNIST_ROOT", "/somewhere/else")
    assert default_root() == Path("/somewhere/else")


def test_real_mnist_split_and_normalisation(mnist_root):
    dm = MNISTDataModule(root=str(mnist_root), download=False)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    (x_train, _), (x_val, y_val), (x_test, _) = dm.train, dm.val, dm.test
    assert x_train.shape == (55000, 784) and x_val.shape == (5000, 784) and x_test.shape == (10000, 784)
    # the standard statistics were computed on the full training set, so the 55k part is close to them
    assert abs(x_train.mean().item()) < 0.01 and abs(x_train.std().item() - 1.0) < 0.01
    torch.testing.assert_close(x_test.min(), torch.tensor(-MEAN / STD))
    assert torch.bincount(y_val, minlength=10).min() > 400  # every digit is in the validation split
    # the split is fixed: a second DataModule holds out the very same images
    again = MNISTDataModule(root=str(mnist_root), download=False)
    again.setup("fit")
    assert torch.equal(again.val[1], y_val) and torch.equal(again.val[0], x_val)


def test_seed_config_learns_real_mnist_in_one_epoch(mnist_root, tmp_path):
    # configs/seed.yaml's network for 60 steps (a quarter epoch): far above chance on the test set
    cli = main(
        [
            "--config", str(REPO / "configs" / "seed.yaml"), "--data.root", str(mnist_root),
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "60", "--trainer.accelerator", "cpu", "--trainer.logger", "false",
            "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
        ],
        run=False,
    )
    cli.trainer.fit(cli.model, cli.datamodule)
    acc = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]["test_acc"]
    assert acc > 0.85
