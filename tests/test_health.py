"""Gradient health: dead / saturated units from forward hooks, gradient norms, the Lightning callback."""

import csv
import math
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import manual_autograd as ma
from manual_autograd.health import HealthMonitor


def test_planted_dead_units():
    model = nn.Sequential(ma.nn.Linear(10, 16), ma.nn.ReLU(), ma.nn.Linear(16, 3))
    with torch.no_grad():
        model[0].bias[:5] = -1e3  # units 0..4 never fire
    mon = HealthMonitor(model).attach()
    for _ in range(4):
        model(torch.randn(32, 10)).sum().backward()
    assert mon.batches == 4
    m = mon.compute()["1"]
    assert m["dead_fraction"] == 5 / 16 and m["batches"] == 4
    assert 5 / 16 < m["saturated_fraction"] < 1
    assert mon.batches == 0 and mon.compute() == {}  # a new window
    mon.detach()
    model(torch.randn(2, 10))
    assert mon.batches == 0


def test_eval_and_no_grad_not_counted():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    mon = HealthMonitor(model).attach()
    with torch.no_grad():
        model(torch.randn(3, 4))
    model.eval()
    model(torch.randn(3, 4))
    assert mon.batches == 0
    model.train()
    model(torch.randn(3, 4))
    assert mon.batches == 1


@pytest.mark.parametrize(
    "act",
    [
        nn.ReLU(), ma.nn.ReLU(), nn.LeakyReLU(0.001), ma.nn.LeakyReLU(0.1), ma.nn.LeakyReLU(-0.001),
        nn.ELU(), nn.ELU(alpha=0.005), nn.ReLU6(), nn.Hardtanh(-0.5, 0.5), nn.GELU(), ma.nn.GELU(),
        nn.GELU(approximate="tanh"), ma.nn.GELU(approximate="tanh"),
        ma.nn.SiLU(), nn.Sigmoid(), nn.Tanh(),
    ],
    ids=lambda m: repr(m),
)
def test_saturation_matches_autograd_derivative(act):
    thr = 0.05
    mon = HealthMonitor(nn.Sequential(act), threshold=thr).attach()
    xs = [torch.randn(64, 8) * 4 for _ in range(3)]
    sat = dead = 0
    for x in xs:
        x = x.requires_grad_()
        y = act(x)
        (d,) = torch.autograd.grad(y.sum(), x)  # elementwise: the derivative itself
        sat += (d.abs() < thr).sum().item()
        dead = (d.abs() < thr).all(0) if isinstance(dead, int) else dead & (d.abs() < thr).all(0)
    m = mon.compute()["0"]
    assert m["saturated_fraction"] == pytest.approx(sat / (3 * 64 * 8), abs=1e-9)
    assert m["dead_fraction"] == pytest.approx(dead.double().mean().item(), abs=1e-9)
    outs = torch.cat([act(x).detach() for x in xs])
    assert m["mean"] == pytest.approx(outs.mean().item(), rel=1e-5, abs=1e-6)
    assert m["std"] == pytest.approx(outs.std(correction=0).item(), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize(
    "act", [nn.GELU(), nn.GELU(approximate="tanh"), ma.nn.GELU(approximate="tanh"), nn.SiLU()], ids=repr
)
def test_margin_is_the_modules_own_derivative(act):
    # the margin + threshold is |f'(x)|, of the variant the module computes (tanh GELU was read as exact)
    from manual_autograd.health import _margin

    x = torch.linspace(-6, 6, 2001, dtype=torch.float64, requires_grad=True)
    (d,) = torch.autograd.grad(act(x).sum(), x)
    torch.testing.assert_close(_margin(act, x.detach(), None, 0.05) + 0.05, d.abs(), rtol=1e-12, atol=1e-12)


def test_stats_every_samples_counts_but_tracks_dead_on_every_batch():
    act = nn.ReLU()
    mon = HealthMonitor(nn.Sequential(act), stats_every=2).attach()
    xs = [torch.randn(8, 5) for _ in range(4)]
    for x in xs:
        x[:, 0] = x[:, 2] = -1.0  # units 0 and 2 off ...
    xs[1][0, 2] = 1.0  # ... but unit 2 fires once, in batch 1, which is not sampled
    for x in xs:
        act(x.requires_grad_())
    m = mon.compute()["0"]
    assert (m["batches"], m["sampled"]) == (4, 2)
    assert m["dead_fraction"] == 1 / 5  # unit 0 only
    sampled = torch.cat([xs[0], xs[2]]).detach()
    assert m["saturated_fraction"] == pytest.approx((sampled <= 0).double().mean().item(), abs=1e-12)
    assert m["mean"] == pytest.approx(sampled.clamp_min(0).mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match="'stats_every' to be a positive int, got 0"):
        HealthMonitor(nn.ReLU(), stats_every=0)


def test_inplace_reads_the_input_before_it_is_overwritten():
    act = ma.nn.LeakyReLU(-0.005, inplace=True)  # a negative slope flips the sign of negatives
    model = nn.Sequential(nn.Linear(6, 6), act)
    with torch.no_grad():
        model[0].bias[:2] = -1e3
    mon = HealthMonitor(model).attach()
    model(torch.randn(16, 6)).sum().backward()
    m = mon.compute()["1"]
    assert m["dead_fraction"] == 2 / 6


def test_unit_dim_channels():
    act = nn.ReLU()
    mon = HealthMonitor(nn.Sequential(act), unit_dim=1).attach()
    x = torch.randn(4, 3, 5, 5)
    x[:, 1] = -1.0  # channel 1 dead
    act(x.requires_grad_())
    assert mon.compute()["0"]["dead_fraction"] == 1 / 3


def test_grad_norms_per_layer():
    model = nn.Sequential(ma.nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2, bias=False))
    mon = HealthMonitor(model)
    assert mon.grad_norms() == {}
    model(torch.randn(8, 5)).square().sum().backward()
    norms = mon.grad_norms()
    want0 = math.sqrt(model[0].weight.grad.norm() ** 2 + model[0].bias.grad.norm() ** 2)
    assert norms["0"] == pytest.approx(want0, rel=1e-6)
    assert norms["2"] == pytest.approx(model[2].weight.grad.norm().item(), rel=1e-6)
    assert norms["total"] == pytest.approx(math.hypot(norms["0"], norms["2"]), rel=1e-9)


def test_bad_arguments():
    with pytest.raises(TypeError, match="'model' must be an nn.Module, not int"):
        HealthMonitor(3)
    with pytest.raises(ValueError, match="'threshold' to be a positive number, got -1"):
        HealthMonitor(nn.ReLU(), threshold=-1)
    mon = HealthMonitor(nn.Sequential(nn.ReLU())).attach()
    mon.model(torch.randn(2, 3, requires_grad=True))
    with pytest.raises(RuntimeError, match="4 units along unit_dim=-1 after 3"):
        mon.model(torch.randn(2, 4, requires_grad=True))


def test_library_imports_without_lightning():
    code = "import sys, manual_autograd, manual_autograd.callbacks; assert 'lightning' not in sys.modules; " \
           "assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_callback_fit_logs_warns_and_plots(tmp_path):
    L = pytest.importorskip("lightning")
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    from manual_autograd.callbacks import GradientHealth

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(ma.nn.Linear(20, 16), ma.nn.ReLU(), ma.nn.Linear(16, 3))
            with torch.no_grad():
                self.net[0].bias[:12] = -1e3  # 75 % dead

        def training_step(self, batch, idx):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    with pytest.raises(ValueError, match="'window' to be a positive int, got 0"):
        GradientHealth(window=0)
    data = DataLoader(TensorDataset(torch.randn(160, 20), torch.randint(0, 3, (160,))), batch_size=16)
    cb = GradientHealth(window=4, dead_threshold=0.5, log_every_n_steps=2)
    trainer = L.Trainer(
        max_epochs=1, callbacks=[cb], logger=CSVLogger(tmp_path), enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, log_every_n_steps=2,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(Net(), data)
    dead_warnings = [w for w in caught if "GradientHealth" in str(w.message)]
    assert len(dead_warnings) == 1 and "75%" in str(dead_warnings[0].message)  # once, not every window
    assert [v for _, v in cb.history["net.1/dead_fraction"]] == [0.75, 0.75, 0.75]  # 10 batches: 4 + 4 + 2
    assert len(cb.history["net.0/grad_norm"]) == 5
    assert cb.plot_path and (tmp_path / "lightning_logs" / "version_0" / "health.png").stat().st_size > 1000
    with open(trainer.logger.experiment.metrics_file_path) as f:
        keys = set(next(csv.reader(f)))
    assert {"health/net.1/dead_fraction", "health/net.1/saturated_fraction", "health/net.0/grad_norm"} <= keys
