"""train/: the LightningCLI, the MNIST DataModule and the classifier, on small synthetic MNIST files.

The files are written in the real IDX format into ``tmp_path/MNIST/raw``, so the DataModule's real
loading code (torchvision's reader, the split, the normalisation) runs on them.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from train import MNISTClassifier, MNISTDataModule, TensorBatches, build_mlp, main
from train.data import MEAN, STD, RAW_FILES

REPO = Path(__file__).resolve().parent.parent
TINY = str(REPO / "configs" / "tiny.yaml")


def write_idx(raw: Path, prefix: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Write ``images`` (N, 28, 28) uint8 and ``labels`` (N,) in the IDX format of the MNIST files."""
    n = len(labels)
    header = lambda magic, *dims: b"".join(int(v).to_bytes(4, "big") for v in (magic, *dims))  # noqa: E731
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header(2051, n, 28, 28) + images.numpy().tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(header(2049, n) + labels.numpy().tobytes())


def synthetic_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable fake digits: class ``c`` lights a 6×6 patch at one of 10 fixed places, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g, dtype=torch.uint8)
    images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.uint8)
    for c in range(10):
        r, col = 2 + 12 * (c // 5), 2 + 5 * (c % 5)
        images[labels == c, r : r + 6, col : col + 6] = 255
    return images, labels


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_mnist")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw, "train", *synthetic_digits(448, seed=1))
    write_idx(raw, "t10k", *synthetic_digits(128, seed=2))
    return root


def fit_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["fit", "--config", TINY, "--data.root", str(root), "--trainer.default_root_dir", str(out), *extra]


# ------------------------------------------------------------------------------------------------
# the command line


def test_cli_smoke_fit_writes_everything(tiny_root, tmp_path):
    # the documented entry point, as a user runs it
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "train", *fit_args(tiny_root, out, "--trainer.limit_train_batches", "5")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = out / "version_0"
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(name.startswith("best-") for name in ckpts), ckpts
    assert (run / "config.yaml").is_file() and "hidden_sizes" in (run / "config.yaml").read_text()
    assert (run / "metrics.csv").is_file()
    if importlib.util.find_spec("tensorboard") is not None:  # TensorBoard logs only when it is installed
        assert any((run / "tensorboard").iterdir())
    png = run / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"curves: {png}" in proc.stdout
    assert "Test accuracy of" in proc.stdout
    results = json.loads((run / "results.json").read_text())
    assert results["global_step"] == 5 and 0.0 <= results["test_acc"] <= 1.0


class StartStep(Callback):
    def on_train_start(self, trainer, pl_module):
        self.step, self.epoch = trainer.global_step, trainer.current_epoch


class StopAfterOneEpoch(Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def test_resume_continues_at_the_saved_step(tiny_root, tmp_path):
    # a 2-epoch run interrupted after its first epoch, then resumed from its last checkpoint
    cli = main(fit_args(tiny_root, tmp_path / "a", "--trainer.max_epochs", "2")[1:], run=False)
    cli.trainer.callbacks.append(StopAfterOneEpoch())
    cli.trainer.fit(cli.model, cli.datamodule)
    steps = cli.trainer.global_step
    assert steps == len(cli.datamodule.train_dataloader())
    last = tmp_path / "a" / "version_0" / "checkpoints" / "last.ckpt"

    resumed = main(fit_args(tiny_root, tmp_path / "b", "--trainer.max_epochs", "2")[1:], run=False)
    start = StartStep()
    resumed.trainer.callbacks.append(start)
    resumed.trainer.fit(resumed.model, resumed.datamodule, ckpt_path=str(last))
    assert (start.step, start.epoch) == (steps, 1)
    assert resumed.trainer.global_step == 2 * steps
    # the per-step schedule resumed too, and ran to its planned end
    assert resumed.trainer.lr_scheduler_configs[0].scheduler.last_epoch == 2 * steps


def _fit_weights(root: Path, out: Path, *extra: str):
    cli = main(fit_args(root, out, *extra)[1:], run=False)
    cli.trainer.fit(cli.model, cli.datamodule)
    acc = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]["test_acc"]
    return {k: v.detach().clone() for k, v in cli.model.net.state_dict().items()}, acc


def test_manual_and_torch_impl_train_the_same(tiny_root, tmp_path):
    manual, acc_manual = _fit_weights(tiny_root, tmp_path / "m", "--model.impl", "manual")
    native, acc_native = _fit_weights(tiny_root, tmp_path / "t", "--model.impl", "torch")
    assert manual.keys() == native.keys()
    for k in manual:
        torch.testing.assert_close(manual[k], native[k], rtol=0, atol=1e-4, msg=f"{k} differs")
    assert acc_manual == acc_native
    assert acc_manual > 0.5  # it learned something, so the comparison is not of two untrained nets


def test_same_seed_same_weights(tiny_root, tmp_path):
    first, _ = _fit_weights(tiny_root, tmp_path / "1", "--trainer.limit_train_batches", "6")
    second, _ = _fit_weights(tiny_root, tmp_path / "2", "--trainer.limit_train_batches", "6")
    other, _ = _fit_weights(tiny_root, tmp_path / "3", "--trainer.limit_train_batches", "6", "--seed_everything", "1")
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_bf16_mixed_fit_on_cpu(tiny_root, tmp_path):
    weights, acc = _fit_weights(tiny_root, tmp_path, "--trainer.precision", "bf16-mixed", "--model.activation", "gelu")
    assert all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in weights.values())
    assert acc > 0.5


def test_validate_test_predict_from_a_checkpoint(tiny_root, tmp_path, capsys):
    main(fit_args(tiny_root, tmp_path / "fit", "--trainer.limit_train_batches", "3"))
    ckpt = str(tmp_path / "fit" / "version_0" / "checkpoints" / "last.ckpt")
    for sub in ("validate", "test", "predict"):
        cli = main([sub, "--config", TINY, "--data.root", str(tiny_root), "--ckpt_path", ckpt,
                    "--trainer.default_root_dir", str(tmp_path / sub)])
        key = {"validate": "val_acc", "test": "test_acc"}.get(sub)
        if key:
            assert 0.0 <= float(cli.trainer.callback_metrics[key]) <= 1.0
    lines = (tmp_path / "predict" / "version_0" / "predictions.csv").read_text().splitlines()
    assert lines[0] == "index,label" and len(lines) == 1 + 128
    assert all(0 <= int(line.split(",")[1]) < 10 for line in lines[1:])


# ------------------------------------------------------------------------------------------------
# bad configs stop before training starts


class NoTraining(Callback):
    def on_train_start(self, trainer, pl_module):
        raise AssertionError("training started")


@pytest.mark.parametrize(
    "args, match",
    [
        (["--model.activation", "tanh"], "activation"),
        (["--model.lr", "-0.1"], "lr"),
        (["--model.hidden_sizes", "[0]"], "hidden_sizes"),
        (["--data.batch_size", "0"], "batch_size"),
    ],
)
def test_bad_config_values_stop_before_training(tiny_root, tmp_path, args, match, capsys):
    with pytest.raises((ValueError, SystemExit)) as info:
        main(fit_args(tiny_root, tmp_path, *args), run=True)
    message = str(info.value) + capsys.readouterr().err
    assert match in message
    assert not (tmp_path / "version_0").exists()  # no run folder, no checkpoint


def test_missing_data_stops_before_training(tmp_path):
    cli = main(fit_args(tmp_path / "nowhere", tmp_path / "runs")[1:], run=False)
    cli.trainer.callbacks.append(NoTraining())
    with pytest.raises(FileNotFoundError) as info:
        cli.trainer.fit(cli.model, cli.datamodule)
    message = str(info.value)
    # says which files are missing, where they go, and how to point the run at them
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert all(name in message for name in RAW_FILES)
    assert "data.root" in message and "MNIST_ROOT" in message
    assert cli.trainer.global_step == 0


def test_bad_model_arguments_in_python():
    with pytest.raises(ValueError, match="activation"):
        MNISTClassifier(activation="tanh")
    with pytest.raises(ValueError, match="'lr'"):
        MNISTClassifier(lr=-1.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        MNISTClassifier(label_smoothing=1.5)
    with pytest.raises(ValueError, match="impl"):
        build_mlp([784, 10], impl="jax")


# ------------------------------------------------------------------------------------------------
# data and model pieces


def test_preloaded_and_dataloader_paths_serve_the_same_data(tiny_root):
    fast = MNISTDataModule(root=str(tiny_root), val_size=64, preload=True, download=False)
    slow = MNISTDataModule(root=str(tiny_root), val_size=64, preload=False, download=False)
    for dm in (fast, slow):
        dm.prepare_data()
        dm.setup("fit")
        dm.setup("test")
    for stage in ("val_dataloader", "test_dataloader"):
        x_fast = torch.cat([x for x, _ in getattr(fast, stage)()])
        x_slow = torch.cat([x.flatten(1) for x, _ in getattr(slow, stage)()])
        y_fast = torch.cat([y for _, y in getattr(fast, stage)()])
        y_slow = torch.cat([y for _, y in getattr(slow, stage)()])
        torch.testing.assert_close(x_fast, x_slow)
        assert torch.equal(y_fast, y_slow)
    # the normalisation is MNIST's: pixel 0 maps to -MEAN/STD, 255 to (1-MEAN)/STD
    x = fast.train[0]
    torch.testing.assert_close(x.min(), torch.tensor(-MEAN / STD))
    torch.testing.assert_close(x.max(), torch.tensor((1 - MEAN) / STD))
    assert len(fast.train[1]) == 448 - 64 and len(fast.val[1]) == 64


def test_tensor_batches_shuffle_per_epoch_and_cover_everything():
    x, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    batches = TensorBatches(x, y, batch_size=4, shuffle=True, seed=3)
    assert len(batches) == 3
    first = torch.cat([b for _, b in batches])
    again = torch.cat([b for _, b in batches])
    batches.sampler.set_epoch(1)
    second = torch.cat([b for _, b in batches])
    assert torch.equal(first, again) and not torch.equal(first, second)
    assert torch.equal(first.sort().values, y) and torch.equal(second.sort().values, y)
    assert [len(b) for _, b in TensorBatches(x, y, 4, drop_last=True)] == [4, 4]


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "gelu", "silu"])
def test_build_mlp_matches_torch_nn(activation):
    torch.manual_seed(0)
    manual = build_mlp([20, 16, 8, 4], activation, "manual")
    torch.manual_seed(0)
    native = build_mlp([20, 16, 8, 4], activation, "torch")
    assert [type(m).__mro__[1] for m in manual] == [type(m) for m in native]  # subclasses, layer for layer
    x = torch.randn(5, 20)
    torch.testing.assert_close(manual(x), native(x))


def test_activation_configs_parse():
    for name in ("relu", "leaky_relu", "gelu", "silu"):
        cli = main(["--config", str(REPO / "configs" / f"mnist_{name}.yaml")], run=False)
        assert cli.model.hparams.activation == name


# ------------------------------------------------------------------------------------------------
# CUDA


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_fit_on_cuda_with_data_on_the_device(tiny_root, tmp_path, precision):
    cli = main(fit_args(tiny_root, tmp_path, "--trainer.accelerator", "cuda", "--trainer.precision", precision)[1:], run=False)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert cli.datamodule.train[0].device.type == "cuda"
    assert cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]["test_acc"] > 0.5


def test_bf16_mixed_fused_fit_on_cpu(tiny_root, tmp_path):
    # fused MLP under autocast: ActivationLinear takes the autocast dtype's input and float32 weights
    weights, acc = _fit_weights(
        tiny_root, tmp_path, "--trainer.precision", "bf16-mixed", "--model.fused", "true", "--model.activation", "gelu"
    )
    assert all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in weights.values())
    assert acc > 0.5
