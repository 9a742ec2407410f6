"""Hugging Face GPT-2 and Llama, converted by ``manual_autograd.convert`` beside the unconverted model.

For each model (small configs at sequence length 1024, random weights) and each native attention
(``sdpa``: torch's ``scaled_dot_product_attention``, CPU kernel; ``eager``: the math path,
``softmax(q kᵀ/√d) v``), the converted model's saved activation bytes per block, the peak memory of
a training step (:class:`benchmarks.fused.LiveBytes`) and the step time, manual / native. Saved
bytes per block are the difference between the 2-layer and the 1-layer model's (parameters and
the input ids excluded), so embeddings, head and loss cancel out. Writes
``benchmarks/results/hf_<device>.{md,json}``::

    python -m benchmarks.hf            # needs transformers (the hf extra)
    python -m benchmarks.hf --quick    # a smoke run: fewer rounds
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

import manual_autograd as ma

from .common import env_info, ratio_cell, report_header, saved_bytes, target_mark, time_ratio, write_report
from .fused import peak_bytes

__all__ = ["MODELS", "build", "measure", "to_markdown", "main"]

RESULTS = Path(__file__).resolve().parent / "results"
SHAPE = dict(seq=1024, batch=1, hidden=256, heads=4, vocab=8192, layers=2)
TARGETS = {"sdpa": 0.70, "eager": 0.30}  # saved per block, manual / native (issue 34, the library GPT's)
DROPOUT = 0.1  # GPT-2's residual and embedding dropout; attention dropout 0 (torch's CPU kernel has none)
# use_cache=False, as in training: a key/value cache copies the keys and values, and both models save the copies


def _gpt2(layers, attn, s):
    import transformers

    cfg = transformers.GPT2Config(
        n_layer=layers, n_embd=s["hidden"], n_head=s["heads"], vocab_size=s["vocab"], n_positions=s["seq"],
        bos_token_id=0, eos_token_id=0, resid_pdrop=DROPOUT, embd_pdrop=DROPOUT, attn_pdrop=0.0,
        attn_implementation=attn, use_cache=False,
    )
    return transformers.GPT2LMHeadModel(cfg)


def _llama(layers, attn, s):
    import transformers

    cfg = transformers.LlamaConfig(
        num_hidden_layers=layers, hidden_size=s["hidden"], intermediate_size=s["hidden"] * 8 // 3,
        num_attention_heads=s["heads"], num_key_value_heads=s["heads"] // 2, vocab_size=s["vocab"],
        max_position_embeddings=s["seq"], bos_token_id=0, eos_token_id=0, pad_token_id=None, attn_implementation=attn,
        use_cache=False,
    )
    return transformers.LlamaForCausalLM(cfg)


MODELS = {"gpt2": _gpt2, "llama": _llama}


def build(name: str, layers: int, attn: str, shape=SHAPE):
    """The native model (``attn``: ``'sdpa'`` | ``'eager'``) and its converted copy, in training mode."""
    torch.manual_seed(0)
    native = MODELS[name](layers, attn, shape).train()
    return native, ma.convert(native)


def _closures(model, ids):
    params = list(model.parameters())

    def record():
        return model(ids, labels=ids).loss

    def step():
        for p in params:
            p.grad = None
        model(ids, labels=ids).loss.backward()

    return record, step, params


def _saved(model, ids):
    record, _, params = _closures(model, ids)
    return saved_bytes(record, exclude=params, model_input=ids)["act"]


def measure(name: str, attn: str, rounds: int, min_run_time: float, shape=SHAPE) -> dict:
    ids = torch.randint(0, shape["vocab"], (shape["batch"], shape["seq"]), generator=torch.Generator().manual_seed(0))
    saved = {}
    for layers in (1, shape["layers"]):
        native, manual = build(name, layers, attn, shape)
        saved[layers] = {"native": _saved(native, ids), "manual": _saved(manual, ids)}
    per_block = {k: (saved[shape["layers"]][k] - saved[1][k]) / (shape["layers"] - 1) for k in ("native", "manual")}
    _, native_step, _ = _closures(native, ids)
    _, manual_step, _ = _closures(manual, ids)
    peak = {"native": peak_bytes(native_step), "manual": peak_bytes(manual_step)}
    times = time_ratio(native_step, manual_step, rounds=rounds, min_run_time=min_run_time)
    return {
        "model": name,
        "native_attention": attn,
        "saved_per_block": per_block,
        "saved_per_block_ratio": per_block["manual"] / per_block["native"],
        "saved_total": saved[shape["layers"]],
        "saved_total_ratio": saved[shape["layers"]]["manual"] / saved[shape["layers"]]["native"],
        "peak": peak,
        "peak_ratio": peak["manual"] / peak["native"],
        "step": times,
        "target": TARGETS[attn],
    }


def _mib(n):
    return f"{n / 2**20:,.1f}"


def to_markdown(report) -> str:
    s = report["shape"]
    out = [
        "# Hugging Face models, converted (`manual_autograd.convert`) beside native",
        "",
        *report_header(report, f"{report['rounds']} interleaved rounds"),
        f"Shape: batch {s['batch']}, sequence {s['seq']}, hidden {s['hidden']}, {s['heads']} heads "
        f"(Llama: {s['heads'] // 2} key/value heads, intermediate {s['hidden'] * 8 // 3}), vocab {s['vocab']}, "
        f"{s['layers']} layers; float32, training mode (GPT-2: residual and embedding dropout {DROPOUT}, "
        "attention dropout 0), `use_cache=False` (as in training: a key/value cache would copy the keys and values). Native: the unconverted model with `attn_implementation` = sdpa (torch's CPU "
        "kernel) or eager (math attention); manual: `manual_autograd.convert(model)`. Saved per block: bytes "
        "kept for backward by one transformer block (the 2-layer minus the 1-layer model's, parameters "
        "excluded); peak: live bytes of a training step (LiveBytes); step: manual / native time of a "
        "training step, median of interleaved rounds [quartiles] (a shared 2-core machine: noisy).",
        "",
        "| model | native attention | saved / block, native → manual (MiB) | ratio (target) | whole model saved ratio "
        "| peak, native → manual (MiB) | peak ratio | step time ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        sv, pk = r["saved_per_block"], r["peak"]
        out.append(
            f"| {r['model']} | {r['native_attention']} | {_mib(sv['native'])} → {_mib(sv['manual'])} "
            f"| **{r['saved_per_block_ratio']:.3f}**{target_mark(r['saved_per_block_ratio'], r['target'])} "
            f"| {r['saved_total_ratio']:.3f} | {_mib(pk['native'])} → {_mib(pk['manual'])} | {r['peak_ratio']:.3f} "
            f"| {ratio_cell(r['step'])} |"
        )
    out += ["", f"Whole run: {report['wall_s']:.0f} s."]
    return "\n".join(out) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hf", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="few short rounds: a smoke run, noisy figures")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 8, quick 2)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (default: all cores)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rounds = args.rounds or (2 if args.quick else 8)
    min_run_time = 0.01 if args.quick else 0.2
    start = time.perf_counter()
    rows = []
    for name in MODELS:
        for attn in TARGETS:
            t0 = time.perf_counter()
            r = measure(name, attn, rounds, min_run_time)
            rows.append(r)
            print(f"{name:6s} {attn:6s} saved/block {r['saved_per_block_ratio']:.3f}  peak {r['peak_ratio']:.3f}  "
                  f"step {r['step']['ratio']:.2f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    report = {
        "command": "python -m benchmarks.hf " + " ".join(sys.argv[1:] if argv is None else argv),
        "rounds": rounds,
        "shape": SHAPE,
        "env": env_info(torch.device("cpu")),
        "rows": rows,
        "wall_s": time.perf_counter() - start,
    }
    write_report(report, args.out, "hf_cpu", to_markdown)
    return report


if __name__ == "__main__":
    main()
