"""The training loop of train/: what it logs without per-step syncs, compiled steps, resuming after SIGKILL.

Runs on the small synthetic MNIST files of tests/test_train.py (``tiny_root``) and configs/tiny.yaml.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_train import TINY, fit_args, tiny_root  # noqa: F401 (a fixture)
from train import MNISTClassifier, main

REPO = Path(__file__).resolve().parent.parent


def test_logs_every_n_steps_and_per_epoch(tiny_root, tmp_path):
    # 12 steps an epoch, the step loss every 5 optimizer steps, the epoch figures once an epoch
    main(fit_args(tiny_root, tmp_path, "--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "5"))
    rows = list(csv.DictReader(open(tmp_path / "version_0" / "metrics.csv")))
    step_rows = [int(r["step"]) for r in rows if r.get("train_loss_step")]
    assert step_rows == [4, 9, 14, 19]  # global steps 5, 10, 15, 20 (the logger counts from 0)
    epochs = {int(r["epoch"]): r for r in rows if r.get("train_loss_epoch")}
    assert sorted(epochs) == [0, 1]
    acc = {int(r["epoch"]) for r in rows if r.get("train_acc")}
    val = {int(r["epoch"]) for r in rows if r.get("val_acc")}
    assert acc == val == {0, 1}
    results = json.loads((tmp_path / "version_0" / "results.json").read_text())
    assert results["global_step"] == 24 and results["test_acc"] > 0.5
    # the epoch loss is the mean of the step losses: the last epoch's is below the first's
    assert float(epochs[1]["train_loss_epoch"]) < float(epochs[0]["train_loss_epoch"])


def test_progress_bar_refreshes_with_the_loggers(tiny_root, tmp_path):
    from lightning.pytorch.callbacks import TQDMProgressBar

    cli = main(fit_args(tiny_root, tmp_path, "--trainer.enable_progress_bar", "true", "--trainer.log_every_n_steps", "7")[1:], run=False)
    bars = [c for c in cli.trainer.callbacks if isinstance(c, TQDMProgressBar)]
    assert [b.refresh_rate for b in bars] == [7]
    off = main(fit_args(tiny_root, tmp_path)[1:], run=False)  # tiny.yaml: enable_progress_bar false
    assert off.trainer.progress_bar_callback is None


def _steps(model: MNISTClassifier, x, y, n: int) -> list[torch.Tensor]:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(n):
        opt.zero_grad(set_to_none=True)
        loss = model.loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return losses


def test_compile_gives_the_eager_losses():
    torch.manual_seed(0)
    x, y = torch.randn(32, 784), torch.randint(0, 10, (32,))
    torch.manual_seed(1)
    eager = MNISTClassifier(hidden_sizes=[32], activation="gelu")
    torch.manual_seed(1)
    compiled = MNISTClassifier(hidden_sizes=[32], activation="gelu", compile=True)
    assert compiled.net._compiled_call_impl is not None
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # checkpoints stay interchangeable
    torch.testing.assert_close(_steps(compiled, x, y, 3), _steps(eager, x, y, 3), rtol=1e-5, atol=1e-6)


def test_compile_mode_needs_compile():
    with pytest.raises(ValueError, match="compile_mode"):
        MNISTClassifier(compile_mode="reduce-overhead")
    with pytest.raises(ValueError, match="compile_mode"):
        MNISTClassifier(compile=True, compile_mode="fastest")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compile_on_cuda_gives_the_eager_losses(mode):
    torch.manual_seed(0)
    x, y = torch.randn(256, 784, device="cuda"), torch.randint(0, 10, (256,), device="cuda")
    torch.manual_seed(1)
    eager = MNISTClassifier(hidden_sizes=[512, 256]).cuda()
    torch.manual_seed(1)
    compiled = MNISTClassifier(hidden_sizes=[512, 256], compile=True, compile_mode=mode).cuda()
    # reduce-overhead replays CUDA graphs: the outputs of a replay are overwritten by the next, so clone
    got = [loss.clone() for loss in _steps(compiled, x, y, 5)]
    torch.testing.assert_close(torch.stack(got), torch.stack(_steps(eager, x, y, 5)), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# faults

KILLED_FIT = """
import os, signal, sys
from lightning.pytorch import Callback
from train import main

class KillMidEpoch(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 5:
            os.kill(os.getpid(), signal.SIGKILL)

cli = main(sys.argv[1:], run=False)
cli.trainer.callbacks.append(KillMidEpoch())
cli.trainer.fit(cli.model, cli.datamodule)
"""


def test_sigkill_then_resume_from_last_ckpt_matches_the_uninterrupted_run(tiny_root, tmp_path):
    epochs = ("--trainer.max_epochs", "3")
    main(fit_args(tiny_root, tmp_path / "whole", *epochs))
    whole = json.loads((tmp_path / "whole" / "version_0" / "results.json").read_text())

    # killed half-way through its second epoch, with no chance to clean up
    proc = subprocess.run([sys.executable, "-c", KILLED_FIT, *fit_args(tiny_root, tmp_path / "killed", *epochs)[1:]],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    last = tmp_path / "killed" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 0

    main(fit_args(tiny_root, tmp_path / "resumed", *epochs, "--ckpt_path", str(last)))
    resumed = json.loads((tmp_path / "resumed" / "version_0" / "results.json").read_text())
    assert resumed["global_step"] == whole["global_step"] == 36
    assert abs(resumed["test_acc"] - whole["test_acc"]) * 100 <= 0.15
    assert whole["test_acc"] > 0.5
