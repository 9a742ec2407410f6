"""Gradient health on fused layers (ActivationLinear watched as the activation inside it), sums
in float32 for half-precision activations, a warning when nothing is watched."""

import warnings

import pytest
import torch
from torch import nn

import manual_autograd as ma
from manual_autograd.health import HealthMonitor

FUSABLE = [("relu", None), ("leaky_relu", 0.005), ("leaky_relu", -0.005), ("gelu", None), ("silu", None)]


def _mlps(activation, slope, sizes=(6, 12, 10, 3)):
    act = (lambda: ma.nn.LeakyReLU(slope)) if slope is not None else activation
    torch.manual_seed(0)
    plain = ma.nn.build_mlp(list(sizes), act)
    torch.manual_seed(0)
    fused = ma.nn.build_mlp(list(sizes), act, fused=True)
    with torch.no_grad():  # plant dead units in the first hidden layer: 4 units never fire
        for m in (plain, fused):
            m[0].bias[:4] = -1e3
    return plain, fused


@pytest.mark.parametrize("activation,slope", FUSABLE, ids=[f"{a}-{s}" for a, s in FUSABLE])
def test_fused_mlp_gives_the_unfused_statistics(activation, slope):
    plain, fused = _mlps(activation, slope)
    assert isinstance(fused[1], ma.nn.ActivationLinear)
    xs = [torch.randn(16, 6) * 3 for _ in range(3)]
    results = []
    for model in (plain, fused):
        mon = HealthMonitor(model, threshold=0.05, stats_every=2).attach()
        for x in xs:
            model(x).sum().backward()
        results.append(list(mon.compute().values()))  # in layer order: one per hidden layer
        mon.detach()
    ours, ref = results[1], results[0]
    assert len(ref) == len(ours) == 2
    for a, b in zip(ours, ref):
        assert (a["batches"], a["sampled"]) == (b["batches"], b["sampled"]) == (3, 2)
        assert a["dead_fraction"] == b["dead_fraction"] and a["saturated_fraction"] == b["saturated_fraction"]
        assert a["mean"] == pytest.approx(b["mean"], rel=1e-5) and a["std"] == pytest.approx(b["std"], rel=1e-5)
    if slope is None or abs(slope) < 0.05:
        assert ref[0]["dead_fraction"] >= 4 / 12


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fused", [False, True], ids=["module", "fused"])
def test_half_activations_sum_in_float32(dtype, fused):
    # 70000 ones: the half-precision sum overflows (fp16: > 65504) or rounds (bf16: to 70144)
    n = 70000
    if fused:
        layer = ma.nn.ActivationLinear(7, 2, dtype=dtype)
        z = torch.ones(n // 7, 7, dtype=dtype, requires_grad=True)
    else:
        layer = ma.nn.ReLU()
        z = torch.ones(n // 10, 10, dtype=dtype, requires_grad=True)
    mon = HealthMonitor(nn.Sequential(layer)).attach()
    layer(z)
    m = mon.compute()["0"]
    assert m["mean"] == 1.0 and m["std"] == 0.0


def test_no_watched_layer_warns():
    with pytest.warns(UserWarning, match="no activation layer to watch"):
        HealthMonitor(nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HealthMonitor(ma.nn.build_mlp([3, 4, 2], "gelu", fused=True))  # a fused layer is watched


def test_callback_logs_a_fused_mlp(tmp_path):
    L = pytest.importorskip("lightning")
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    from manual_autograd.callbacks import GradientHealth

    class Net(L.LightningModule):
        def __init__(self, fused):
            super().__init__()
            self.net = ma.nn.build_mlp([20, 16, 3], "relu", fused=fused)
            with torch.no_grad():
                self.net[0].bias[:12] = -1e3  # 75 % dead

        def training_step(self, batch, idx):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = DataLoader(TensorDataset(torch.randn(64, 20), torch.randint(0, 3, (64,))), batch_size=16)
    history = []
    for fused in (True, False):
        cb = GradientHealth(window=2, log_every_n_steps=2, plot=False)
        trainer = L.Trainer(
            max_epochs=1, callbacks=[cb], logger=CSVLogger(tmp_path), enable_progress_bar=False,
            enable_model_summary=False, enable_checkpointing=False, log_every_n_steps=2,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.fit(Net(fused), data)
        assert any("75%" in str(w.message) for w in caught)  # the dead-unit warning fires on the fused layer
        history.append(cb.history)
    fused_h, plain_h = history
    assert [v for _, v in fused_h["net.1/dead_fraction"]] == [v for _, v in plain_h["net.1/dead_fraction"]] == [0.75, 0.75]
    assert "net.1/saturated_fraction" in fused_h and "net.1/grad_norm" in fused_h


def test_callback_warns_when_nothing_is_watched(tmp_path):
    L = pytest.importorskip("lightning")
    from torch.utils.data import DataLoader, TensorDataset

    from manual_autograd.callbacks import GradientHealth

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(4, 2)

        def training_step(self, batch, idx):
            return self.net(batch[0]).square().mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    trainer = L.Trainer(
        max_epochs=1, callbacks=[GradientHealth(window=2, plot=False)], logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
    )
    with pytest.warns(UserWarning, match="no activation layer to watch"):
        trainer.fit(Net(), DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4))
