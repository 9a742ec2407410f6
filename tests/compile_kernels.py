"""Compile every Triton kernel of manual_autograd for a CUDA GPU (sm_90, an H100/H200), no GPU needed.

    python tests/compile_kernels.py        # prints one line per variant, exits 1 if any fails

The interpreter (``TRITON_INTERPRET=1``) runs a kernel's Python, so it accepts what the compiler
refuses (a Python float global in a kernel, a loop-carried value changing dtype). This runs Triton's
real compiler down to machine code for every kernel in float32, bfloat16 and float64 and for
each of its constexpr branches. ``tests/test_kernels_compile.py`` runs it in a subprocess (it must
import the kernels with ``TRITON_INTERPRET`` unset). Exits 77 when this Triton cannot target CUDA.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

try:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
except ImportError as e:  # pragma: no cover - a Triton without its compiler API
    print(f"skip: {e}")
    sys.exit(77)

from manual_autograd.kernels import activation_linear as al  # noqa: E402
from manual_autograd.kernels import attention as attn  # noqa: E402
from manual_autograd.kernels import cross_entropy as ce  # noqa: E402
from manual_autograd.kernels import dropout, embedding, gelu, glu, leaky_relu, relu, sigmoid, silu  # noqa: E402
from manual_autograd.kernels import tanh as tanh_k  # noqa: E402  (`tanh` is gelu's loop variable below)
from manual_autograd.kernels import softmax as softmax_k  # noqa: E402
from manual_autograd.kernels import linear_cross_entropy as lce  # noqa: E402
from manual_autograd.kernels import layer_norm as ln  # noqa: E402
from manual_autograd.kernels import rms_norm as rms  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
failures: list[str] = []
count = 0


def compile_one(name: str, fn, signature: dict, constexprs: dict, num_warps: int = 4) -> None:
    global count
    count += 1
    full = {**signature, **{k: "constexpr" for k in constexprs}}
    full = {k: full[k] for k in fn.arg_names}  # in argument order
    try:
        triton.compile(ASTSource(fn, full, constexprs), target=TARGET, options={"num_warps": num_warps})
        print("ok  ", name, flush=True)
    except Exception as e:  # every failure is reported, then the exit status says it
        lines = "".join(traceback.format_exception_only(type(e), e)).strip().splitlines()
        msg = next((ln for ln in reversed(lines) if "Error" in ln), lines[-1]).strip()
        failures.append(f"{name}: {msg[:400]}")
        print("FAIL", name, "\n    ", msg[:400], flush=True)


def main() -> int:
    if "nvidia" not in getattr(triton.backends, "backends", {"nvidia": None}):
        print("skip: this Triton has no CUDA backend")
        return 77
    P = lambda t: "*" + t  # noqa: E731
    for dt, acc in (("fp32", tl.float32), ("bf16", tl.float32), ("fp64", tl.float64)):  # fp16 is bf16's code
        accs = "fp64" if dt == "fp64" else "fp32"
        compile_one(f"relu fwd {dt}", relu._relu_fwd, {"x_ptr": P(dt), "out_ptr": P(dt), "n": "i32"}, {"BLOCK": 1024})
        for gs in (0, 1):
            compile_one(f"relu bwd {dt} G_STRIDE={gs}", relu._relu_bwd,
                        {"out_ptr": P(dt), "g_ptr": P(dt), "gx_ptr": P(dt), "n": "i32"}, {"G_STRIDE": gs, "BLOCK": 1024})
        for masked in (False, True):
            s = "*u8" if masked else P(dt)
            compile_one(f"leaky_relu fwd {dt} MASK={masked}", leaky_relu._leaky_fwd,
                        {"x_ptr": P(dt), "out_ptr": P(dt), "mask_ptr": s, "n": "i32", "slope": "fp64"},
                        {"MASK": masked, "ACC": acc, "BLOCK": 1024})
            compile_one(f"leaky_relu bwd {dt} MASK={masked}", leaky_relu._leaky_bwd,
                        {"s_ptr": s, "g_ptr": P(dt), "gx_ptr": P(dt), "n": "i32", "slope": "fp64"},
                        {"MASK": masked, "G_STRIDE": 1, "ACC": acc, "BLOCK": 1024})
        for tanh in (False, True):
            compile_one(f"gelu fwd {dt} TANH={tanh}", gelu._gelu_fwd, {"x_ptr": P(dt), "out_ptr": P(dt), "n": "i32"},
                        {"TANH": tanh, "ACC": acc, "BLOCK": 1024})
            compile_one(f"gelu bwd {dt} TANH={tanh}", gelu._gelu_bwd,
                        {"x_ptr": P(dt), "g_ptr": P(dt), "gx_ptr": P(dt), "n": "i32"},
                        {"G_STRIDE": 1, "TANH": tanh, "ACC": acc, "BLOCK": 1024})
        for keep in (False, True):
            compile_one(f"silu fwd {dt} KEEP={keep}", silu._silu_fwd,
                        {"x_ptr": P(dt), "out_ptr": P(dt), "x0_ptr": P(dt), "n": "i32"}, {"KEEP": keep, "ACC": acc, "BLOCK": 1024})
        compile_one(f"silu bwd {dt}", silu._silu_bwd, {"x_ptr": P(dt), "g_ptr": P(dt), "gx_ptr": P(dt), "n": "i32"},
                    {"G_STRIDE": 1, "ACC": acc, "BLOCK": 1024})
        for act in range(4):  # relu, leaky_relu, gelu, silu
            for tanh in ((False, True) if act == 2 else (False,)):
                compile_one(f"activation_linear {dt} ACT={act} TANH={tanh}", al._act_bwd,
                            {"z_ptr": P(dt), "g_ptr": P(dt), "a_ptr": P(dt), "gz_ptr": P(dt), "n": "i32", "slope": "fp64"},
                            {"ACT": act, "TANH": tanh, "WRITE_ACT": True, "WRITE_GRAD": True, "ACC": acc, "BLOCK": 1024})
        for gl, tanh in ((False, False), (True, False), (True, True)):  # silu, gelu, gelu tanh
            compile_one(f"glu fwd {dt} GELU={gl} TANH={tanh}", glu._glu_fwd,
                        {"gate_ptr": P(dt), "up_ptr": P(dt), "out_ptr": P(dt), "n": "i32"},
                        {"GELU": gl, "TANH": tanh, "ACC": acc, "BLOCK": 1024})
            flags = ((False, True, True), (True, True, True)) + (() if gl else ((True, False, False), (False, False, True)))
            for prod, dg, du in flags:  # GLU's backward, GatedLinear's (+ the product), partial ones
                compile_one(f"glu bwd {dt} GELU={gl} TANH={tanh} PROD={prod} DG={dg} DU={du}", glu._glu_bwd,
                            {"gate_ptr": P(dt), "up_ptr": P(dt), "g_ptr": P(dt), "p_ptr": P(dt), "dg_ptr": P(dt),
                             "du_ptr": P(dt), "n": "i32"},
                            {"G_STRIDE": 1, "GELU": gl, "TANH": tanh, "WRITE_PROD": prod, "WRITE_DG": dg,
                             "WRITE_DU": du, "ACC": acc, "BLOCK": 1024})
        # the tiles ce._blocks picks: a row over several blocks, a whole row, many short rows, one class
        for br, bc, one in ((1, 4096, False), (1, 4096, True), (32, 128, True), (4096, 1, True)):
            for hw, sm in ((False, False), (True, True)):
                tag = f"{dt} {br}x{bc} ONE={one} HAS_W={hw} SMOOTH={sm}"
                compile_one(f"cross_entropy fwd {tag}", ce._ce_fwd,
                            {"x_ptr": P(dt), "x_rs": "i32", "t_ptr": "*i64", "t_s": "i32", "w_ptr": P(dt), "logp_ptr": P(dt),
                             "loss_ptr": P(dt), "wt_ptr": P(accs), "rows": "i32", "C": "i32", "ignore_index": "i32", "eps": "fp64"},
                            {"HAS_W": hw, "SMOOTH": sm, "ONE": one, "ACC": acc, "BLOCK_R": br, "BLOCK_C": bc}, ce._WARPS)
                for red in (0, 1, 2):
                    compile_one(f"cross_entropy bwd {tag} RED={red}", ce._ce_bwd,
                                {"lp_ptr": P(dt), "t_ptr": "*i64", "t_s": "i32", "w_ptr": P(dt), "wsum_ptr": P(accs),
                                 "g_ptr": P(dt), "g_s": "i32", "den_ptr": P(accs), "gx_ptr": P(dt), "rows": "i32", "C": "i32",
                                 "ignore_index": "i32", "eps": "fp64"},
                                {"HAS_W": hw, "SMOOTH": sm, "RED": red, "ACC": acc, "BLOCK_R": br, "BLOCK_C": bc}, ce._WARPS)
        for mean in (False, True):
            compile_one(f"cross_entropy reduce {dt} MEAN={mean}", ce._ce_reduce,
                        {"loss_ptr": P(accs), "wt_ptr": P(accs), "out_ptr": P(dt), "den_ptr": P(accs), "rows": "i32"},
                        {"MEAN": mean, "ACC": acc, "BLOCK": 1024})
        for hw, t in ((False, "*i64"), (True, "*u8")):
            compile_one(f"cross_entropy denominator {dt} HAS_W={hw} target {t}", ce._ce_den,
                        {"t_ptr": t, "t_s": "i32", "w_ptr": P(dt), "den_ptr": P(accs), "rows": "i32", "C": "i32",
                         "ignore_index": "i32"}, {"HAS_W": hw, "ACC": acc, "BLOCK": 1024})
        compile_one(f"linear_cross_entropy softmax_scale {dt}", lce._softmax_scale,
                    {"b_ptr": P(dt), "b_rs": "i32", "lse_ptr": P(dt), "r_ptr": P(dt), "rows": "i32", "width": "i32"},
                    {"ACC": acc, "BLOCK_R": 4, "BLOCK_C": 1024})
        for sum_, cw in ((False, False), (True, False), (True, True)):
            compile_one(f"linear_cross_entropy block_update {dt} SUM={sum_} HAS_CW={cw}", lce._block_update,
                        {"b_ptr": P(dt), "b_rs": "i32", "t_ptr": "*i64", "t_s": "i32", "lse_ptr": P(dt), "zt_ptr": P(dt),
                         "zs_ptr": P(dt), "cw_ptr": P(dt), "rows": "i32", "width": "i32", "c0": "i32"},
                        {"SUM": sum_, "HAS_CW": cw, "ACC": acc, "BLOCK_R": 4, "BLOCK_C": 1024})
        compile_one(f"dropout fwd {dt}", dropout._dropout_fwd,
                    {"x_ptr": P(dt), "seed_ptr": "*i64", "out_ptr": P(dt), "mask_ptr": "*u8", "n": "i32", "q": "fp64"},
                    {"ACC": acc, "BLOCK": 1024})
        for gs in (0, 1):
            compile_one(f"dropout bwd {dt} G_STRIDE={gs}", dropout._dropout_bwd,
                        {"mask_ptr": "*u8", "g_ptr": P(dt), "gx_ptr": P(dt), "n": "i32", "q": "fp64"},
                        {"G_STRIDE": gs, "ACC": acc, "BLOCK": 1024})
        for it in ("*i64", "*i32"):
            compile_one(f"embedding fwd {dt} idx {it}", embedding._embedding_fwd,
                        {"w_ptr": P(dt), "idx_ptr": it, "out_ptr": P(dt), "D": "i32"}, {"BLOCK_D": 1024})
            for freq in (False, True):
                compile_one(f"embedding bwd {dt} idx {it} FREQ={freq}", embedding._embedding_bwd,
                            {"idx_ptr": it, "g_ptr": P(dt), "cnt_ptr": "*i64", "acc_ptr": P(accs), "D": "i32",
                             "padding_idx": "i64"}, {"G_STRIDE": 1, "FREQ": freq, "ACC": acc, "BLOCK_D": 1024})
        # norms: a whole row in one block (1024) and a row over several (4096-column blocks)
        for one, block in ((True, 1024), (False, ln.MAX_BLOCK)):
            for hw, hb in ((False, False), (True, False), (True, True)):
                compile_one(f"layer_norm fwd {dt} ONE={one} HAS_W={hw} HAS_B={hb}", ln._ln_fwd,
                            {"x_ptr": P(dt), "w_ptr": P(dt), "b_ptr": P(dt), "out_ptr": P(dt), "mean_ptr": P(accs),
                             "rstd_ptr": P(accs), "N": "i32", "eps": "fp64"},
                            {"HAS_W": hw, "HAS_B": hb, "ONE": one, "ACC": acc, "BLOCK": block})
            compile_one(f"rms_norm fwd {dt} ONE={one}", rms._rms_fwd,
                        {"x_ptr": P(dt), "w_ptr": P(dt), "out_ptr": P(dt), "rstd_ptr": P(accs), "N": "i32", "eps": "fp64"},
                        {"HAS_W": True, "ONE": one, "ACC": acc, "BLOCK": block})
            for hw, nx, nw in ((False, True, False), (True, True, True), (True, False, True)):
                compile_one(f"layer_norm bwd {dt} ONE={one} HAS_W={hw} NEED_X={nx} NEED_WB={nw}", ln._ln_bwd,
                            {"x_ptr": P(dt), "g_ptr": P(dt), "w_ptr": P(dt), "mean_ptr": P(accs), "rstd_ptr": P(accs),
                             "dx_ptr": P(dt), "dw_ptr": P(accs), "db_ptr": P(accs), "rows": "i32", "N": "i32",
                             "rows_per_program": "i32"},
                            {"HAS_W": hw, "NEED_X": nx, "NEED_WB": nw, "ONE": one, "ACC": acc, "BLOCK": block})
                compile_one(f"rms_norm bwd {dt} ONE={one} HAS_W={hw} NEED_X={nx} NEED_W={nw}", rms._rms_bwd,
                            {"x_ptr": P(dt), "g_ptr": P(dt), "w_ptr": P(dt), "rstd_ptr": P(accs), "dx_ptr": P(dt),
                             "dw_ptr": P(accs), "rows": "i32", "N": "i32", "rows_per_program": "i32"},
                            {"HAS_W": hw, "NEED_X": nx, "NEED_W": nw, "ONE": one, "ACC": acc, "BLOCK": block})
        for name, mod in (("sigmoid", sigmoid), ("tanh", tanh_k)):
            compile_one(f"{name} fwd {dt}", getattr(mod, f"_{name}_fwd"), {"x_ptr": P(dt), "out_ptr": P(dt), "n": "i32"},
                        {"ACC": acc, "BLOCK": 1024})
            compile_one(f"{name} bwd {dt}", getattr(mod, f"_{name}_bwd"), {"out_ptr": P(dt), "g_ptr": P(dt), "gx_ptr": P(dt), "n": "i32"},
                        {"G_STRIDE": 1, "ACC": acc, "BLOCK": 1024})
        for br, bc, one in ((1, 4096, False), (1, 4096, True), (32, 128, True)):  # the tiles softmax_k._blocks picks
            for log in (False, True):
                tag = f"{dt} {br}x{bc} ONE={one} LOG={log}"
                for kname, k, first in (("fwd", softmax_k._softmax_fwd, "x_ptr"), ("bwd", softmax_k._softmax_bwd, None)):
                    sig = ({"x_ptr": P(dt), "out_ptr": P(dt)} if first else {"out_ptr": P(dt), "g_ptr": P(dt), "gx_ptr": P(dt)})
                    compile_one(f"softmax {kname} {tag}", k, {**sig, "rows": "i32", "C": "i32"},
                                {"LOG": log, "ONE": one, "ACC": acc, "BLOCK_R": br, "BLOCK_C": bc})
    compile_attention()
    print(f"triton {triton.__version__}, sm_90: {count - len(failures)} of {count} compiled")
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


def compile_attention() -> None:
    """attention's kernels at the tiles and warps its launchers pick, per dtype (fp16 apart: tl.dot's
    fp16 and bf16 code differ), causal or not, head dims 64 and 128."""
    import torch

    P = lambda t: "*" + t  # noqa: E731
    dims = ("H", "L", "S", "E", "EV")
    for dt, td in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp64", torch.float64)):
        acc, accs = (tl.float64, "fp64") if dt == "fp64" else (tl.float32, "fp32")
        for d in (64, 128):
            blocks = {"BLOCK_E": d, "BLOCK_EV": d}
            compile_one(f"attention bwd_pre {dt} d={d}", attn._attn_bwd_pre,
                        {"o_ptr": P(dt), "g_ptr": P(dt), "d_ptr": P(accs), **dict.fromkeys(
                            ("sob", "soh", "sol", "soe", "sgb", "sgh", "sgl", "sge", "H", "L", "EV"), "i32")},
                        {"ACC": acc, "BLOCK_M": attn._PRE_BLOCK, "BLOCK_EV": d})
            for causal in (False, True):
                for which, fn, ptrs in (("fwd", attn._attn_fwd, ("q_ptr", "k_ptr", "v_ptr", "o_ptr")),
                                        ("kv", attn._attn_bwd_kv, ("q_ptr", "k_ptr", "v_ptr", "g_ptr", "dk_ptr", "dv_ptr")),
                                        ("q", attn._attn_bwd_q, ("q_ptr", "k_ptr", "v_ptr", "g_ptr", "dq_ptr"))):
                    bm, bn, warps = attn._tiles(which, td, d)
                    sig = {a: "i32" for a in fn.arg_names if a.startswith("s") and a != "scale"}  # the strides
                    sig |= dict.fromkeys(ptrs, P(dt)) | dict.fromkeys(("lse_ptr", "d_ptr"), P(accs))
                    sig |= dict.fromkeys(dims, "i32") | {"scale": "fp64"}
                    sig = {a: t for a, t in sig.items() if a in fn.arg_names}
                    compile_one(f"attention {which} {dt} d={d} CAUSAL={causal} {bm}x{bn} warps={warps}", fn, sig,
                                {"CAUSAL": causal, "ACC": acc, "BLOCK_M": bm, "BLOCK_N": bn, **blocks}, warps)


if __name__ == "__main__":
    sys.exit(main())
