"""manual_autograd.GPT against its torch.nn twin, and its training through train.gpt (configs/gpt_tiny.yaml)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from manual_autograd import GPT, GPTConfig
from train.cli import gpt_main
from train.text import TextDataModule, split_files, stdlib_files, unigram_bits

REPO = Path(__file__).resolve().parent.parent
TINY = str(REPO / "configs" / "gpt_tiny.yaml")
CFG = dict(block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fused", [False, True])
def test_manual_and_torch_gpt_agree(dtype, fused):
    cfg = GPTConfig(**CFG, fused_mlp=fused)
    torch.manual_seed(0)
    manual = GPT(cfg, "manual").to(dtype)
    torch.manual_seed(0)
    native = GPT(cfg, "torch").to(dtype)
    # the same init draws: identical weights under the same seed, and the same keys
    assert list(manual.state_dict()) == list(native.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(manual.state_dict().values(), native.state_dict().values()))
    assert manual.transformer.wte.weight is manual.lm_head.weight  # tied
    g = torch.Generator().manual_seed(1)
    idx, tgt = (torch.randint(0, 256, (3, 16), generator=g) for _ in range(2))
    torch.testing.assert_close(manual(idx)[0], native(idx)[0])
    logits, loss_m = manual(idx, tgt)
    assert logits is None  # the fused loss never forms the logits
    loss_t = native(idx, tgt)[1]
    torch.testing.assert_close(loss_m, loss_t)
    loss_m.backward()
    loss_t.backward()
    for (name, p), q in zip(manual.named_parameters(), native.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_state_dict_loads_across_and_math_attention_agrees():
    cfg = GPTConfig(**CFG)
    torch.manual_seed(0)
    native = GPT(cfg, "torch")
    torch.manual_seed(1)
    manual = GPT(cfg, "manual")
    manual.load_state_dict(native.state_dict())
    math_ = GPT(cfg, "torch", attention="math")
    math_.load_state_dict(native.state_dict())
    idx = torch.randint(0, 256, (2, 12))
    torch.testing.assert_close(manual(idx)[0], native(idx)[0])
    torch.testing.assert_close(math_(idx)[0], native(idx)[0])
    with pytest.raises(ValueError, match="attention"):
        GPT(cfg, "manual", attention="math")
    with pytest.raises(ValueError, match="n_head"):
        GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="block_size"):
        manual(torch.zeros(1, 17, dtype=torch.long))


def test_generate_with_dropout_model():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**{**CFG, "dropout": 0.1}))
    model(torch.randint(0, 256, (2, 16)), torch.randint(0, 256, (2, 16)))[1].backward()  # dropout in training
    model.eval()  # dropout off: the sample depends on the generator alone
    idx = torch.tensor([[1, 2, 3]])
    out = model.generate(idx, 20, top_k=5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 23) and torch.equal(out[:, :3], idx) and int(out.max()) < 256
    again = model.generate(idx, 20, top_k=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert torch.equal(model.generate(idx, 4, temperature=0), model.generate(idx, 4, temperature=0))


def test_text_split_is_by_file_deterministic_and_cached(tmp_path, monkeypatch):
    files = stdlib_files()
    assert files == sorted(files) and files
    train, val = split_files(files, 300_000, 4)
    assert train and val and not set(train) & set(val)
    assert (train, val) == split_files(stdlib_files(), 300_000, 4)
    # never downloads: no network call at all
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network"))
    dm = TextDataModule(block_size=32, batch_size=4, max_bytes=300_000, val_every=4, cache_dir=str(tmp_path))
    dm.setup("fit")
    assert dm.cache_file.is_file() and dm.cache_file.parent == tmp_path
    assert dm.train_files == [f.name for f in train] and dm.val_files == [f.name for f in val]
    assert len(dm.train) == sum(f.stat().st_size for f in train) and dm.train.dtype == torch.uint8
    again = TextDataModule(block_size=32, batch_size=4, max_bytes=300_000, val_every=4, cache_dir=str(tmp_path))
    again.setup("fit")
    assert torch.equal(dm.val, again.val)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 32) and torch.equal(x[:, 1:], y[:, :-1])
    vx = torch.cat([b for b, _ in dm.val_dataloader()])
    assert torch.equal(vx, torch.cat([b for b, _ in again.val_dataloader()]))
    base = dm.unigram_bpb()
    assert 3.0 < base["unigram_train_bpb"] < 8.0 and base["unigram_val_bpb"] >= base["unigram_train_bpb"] - 0.2
    assert unigram_bits(torch.tensor([0, 1, 0, 1], dtype=torch.uint8)) == pytest.approx(1.0)


def tiny_args(out: Path, cache: Path, *extra: str) -> list[str]:
    return ["fit", "--config", TINY, "--trainer.default_root_dir", str(out), "--data.cache_dir", str(cache), *extra]


def test_training_lowers_the_loss_and_writes_results(tmp_path):
    # the documented entry point end to end: fit, then the after-fit report
    gpt_main(tiny_args(tmp_path / "run", tmp_path / "cache"))
    run = tmp_path / "run" / "version_0"
    with open(run / "metrics.csv", newline="") as f:
        losses = [float(row["train_loss"]) for row in csv.DictReader(f) if row.get("train_loss")]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < losses[0] - 0.5  # from ln 256 ≈ 5.5 nats down
    r = json.loads((run / "results.json").read_text())
    assert r["global_step"] == 12 and 0 < r["val_bpb"] < r["unigram_val_bpb"] + 1 and r["unigram_train_bpb"] > 3
    assert r["tokens_per_s"] > 0 and r["step_saved_bytes"] > 0 and r["peak_memory_kind"].startswith("process peak RSS")
    assert isinstance(r["sample"], str) and r["sample"].startswith("def ")
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"


class StartStep(Callback):
    def on_train_start(self, trainer, pl_module):
        self.step = trainer.global_step
        self.weights = {k: v.clone() for k, v in pl_module.net.state_dict().items()}


class StopAfterOneEpoch(Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def test_resume_continues_step_and_weights(tmp_path):
    cli = gpt_main(tiny_args(tmp_path / "a", tmp_path / "cache")[1:], run=False)
    cli.trainer.callbacks.append(StopAfterOneEpoch())
    cli.trainer.fit(cli.model, cli.datamodule)
    steps = cli.trainer.global_step
    saved = {k: v.clone() for k, v in cli.model.net.state_dict().items()}
    last = tmp_path / "a" / "version_0" / "checkpoints" / "last.ckpt"
    resumed = gpt_main(tiny_args(tmp_path / "b", tmp_path / "cache", "--seed_everything", "5")[1:], run=False)
    start = StartStep()
    resumed.trainer.callbacks.append(start)
    resumed.trainer.fit(resumed.model, resumed.datamodule, ckpt_path=str(last))
    assert start.step == steps == 6
    assert all(torch.equal(start.weights[k], saved[k]) for k in saved)
    assert resumed.trainer.global_step == 2 * steps


def test_torch_impl_override_trains():
    cli = gpt_main(["--config", TINY, "--model.impl", "torch"], run=False)
    assert cli.model.net.impl == "torch" and cli.datamodule.block_size == cli.model.hparams.block_size
