#!/usr/bin/env python3
"""GPT-2 124M trained with PyTorch on one GPU, the reference for
bench/gpu_train.sh (dst's CUDA backend against PyTorch on the same GPU).

The model mirrors examples/gpt.dst with the 124M overrides (stdlib
transformer.dst, attention.dst, mlp.dst, nn.dst): vocab 50257 (not padded:
gpt.dst does not pad it, and the parameter count, 124,439,808, must match
dst's), learned positions, 12 pre-LayerNorm blocks of width 768 with 12
heads, a fused qkv projection with bias, causal attention, tanh GELU MLP of
width 4 x 768, a final LayerNorm, and the output projection tied to the
token embedding. Initialization as in the .dst files (normal 0.02, positions
0.01, residual projections 0.02 / sqrt(2 layers)). Training as in gpt.dst:
AdamW (betas 0.9/0.95, eps 1e-8, weight decay 0.1 on weight matrices and
embeddings, none on biases and LayerNorm), gradient clipping at norm 1.0.

Precision: fp32 master weights, bf16 autocast; AdamW fused where the
PyTorch version has it. Attention: F.scaled_dot_product_attention held to
the flash backend (--sdpa default lets PyTorch choose).

Modes (--mode): eager, compile (torch.compile of the model), both.
With no --batch, each mode finds the largest batch that fits: powers of two
from --max-batch down, each tried in a child process so that an
out-of-memory leaves nothing behind. Prints one line per mode:

  RESULT torch-eager status=ok tokens_per_s=... mfu=... batch=... ...

--kernels instead prints per-kernel reference figures:
  RESULT kernel-attention ...   SDPA flash forward and forward+backward at
                                (B, heads, seq, head_dim) bf16, causal
  RESULT kernel-copy ...        a large device-to-device copy: the memory
                                bandwidth dst's memory-bound kernels are
                                reported against

Without a GPU it runs on the CPU (for testing the script with a tiny
config: --vocab 256 --seq 64 --dim 64 --heads 4 --layers 2 --batch 2);
MFU is then reported only with --peak.
"""
import argparse
import math
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

OOM_EXIT = 3  # a child's exit status for "this batch does not fit"

# Dense (no sparsity) bf16 tensor-core peak, FLOP/s, from NVIDIA's data sheets.
PEAKS = [  # (substring of the upper-cased device name, peak), first match wins
    ("H100 PCIE", 756e12),
    ("H100 NVL", 835e12),
    ("H200 NVL", 835e12),
    ("H100", 989e12),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H200", 989e12),  # SXM: same tensor cores as the H100 SXM, more memory
    ("GH200", 989e12),
    ("H800", 989e12),
    ("A100", 312e12),
]


def peak_flops(name):
    up = name.upper()
    for key, peak in PEAKS:
        if key in up:
            return peak
    return None


def has_sdpa():
    return hasattr(F, "scaled_dot_product_attention")


def flash_only():
    """A context that holds scaled_dot_product_attention to the flash kernel."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel  # PyTorch >= 2.3
        return sdpa_kernel(SDPBackend.FLASH_ATTENTION)
    except ImportError:
        return torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False)


class NullCtx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Block(nn.Module):
    def __init__(self, dim, heads, proj_std):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim, eps=1e-5)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim, eps=1e-5)
        self.fc = nn.Linear(dim, 4 * dim)
        self.fc_proj = nn.Linear(4 * dim, dim)
        for lin, std in ((self.qkv, 0.02), (self.proj, proj_std), (self.fc, 0.02), (self.fc_proj, proj_std)):
            nn.init.normal_(lin.weight, std=std)
            nn.init.zeros_(lin.bias)

    def forward(self, x):
        B, T, C = x.shape
        hd = C // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=-1)
        q = q.view(B, T, self.heads, hd).transpose(1, 2)  # [B, H, T, hd]
        k = k.view(B, T, self.heads, hd).transpose(1, 2)
        v = v.view(B, T, self.heads, hd).transpose(1, 2)
        if has_sdpa():
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # PyTorch < 2.0, CPU tests only (main() refuses it on a GPU)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            y = F.softmax(att.masked_fill(mask, float("-inf")), dim=-1) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab, seq, dim, heads, layers):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(seq, dim)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)
        proj_std = 0.02 / math.sqrt(2 * layers)
        self.blocks = nn.ModuleList([Block(dim, heads, proj_std) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.blocks:
            x = b(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied: [B, T, vocab]
        # (autocast computes the log-softmax of the bf16 logits in fp32)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def flops_per_token(n_params, layers, seq, dim):
    """Training FLOPs per token, as llm.c and the PaLM paper (appendix B)
    count them: 6 N for the parameter matmuls forward and backward (N all
    parameters, embeddings included; the tied output projection makes the
    token embedding a matmul), plus 12 L T C for attention (QK^T and AV,
    2 x 2 T C FLOPs per token and layer forward, x3 with backward), with
    the causal mask not discounted. dst's own flops_per_token (in the
    generated .c) halves the attention term for causal masking, so its
    "GFLOP/s" is not the figure MFU is computed from here."""
    return 6 * n_params + 12 * layers * seq * dim


def is_oom(exc):
    if hasattr(torch.cuda, "OutOfMemoryError") and isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    s = f"{type(exc).__name__}: {exc}"
    return "out of memory" in s.lower() or "OutOfMemoryError" in s


def make_optimizer(model, device):
    decay = [p for p in model.parameters() if p.dim() >= 2]  # weight matrices, embeddings
    no_decay = [p for p in model.parameters() if p.dim() < 2]  # biases, LayerNorm (@no_decay in nn.dst)
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    kw = dict(lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    if device.type == "cuda":
        try:
            return torch.optim.AdamW(groups, fused=True, **kw), "fused"
        except (TypeError, RuntimeError, ValueError):
            pass
        try:
            return torch.optim.AdamW(groups, foreach=True, **kw), "foreach"
        except (TypeError, RuntimeError, ValueError):
            pass
    return torch.optim.AdamW(groups, **kw), "default"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def train(a, device, mode, batch):
    """One mode at one batch. Returns the RESULT fields; raises on OOM."""
    torch.manual_seed(0)
    model = GPT(a.vocab, a.seq, a.dim, a.heads, a.layers).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    opt, opt_kind = make_optimizer(model, device)
    fwd = model
    if mode == "compile":
        fwd = torch.compile(model, mode=a.compile_mode)
    params = list(model.parameters())
    # Random tokens (speed does not depend on them); a few batches cycled, as
    # dst's loader gives a fresh batch each step.
    gen = torch.Generator().manual_seed(1)
    data = [torch.randint(0, a.vocab, (batch, a.seq + 1), generator=gen).to(device) for _ in range(4)]
    ctx = flash_only if device.type == "cuda" and a.sdpa == "flash" else NullCtx

    def step(i):
        d = data[i % len(data)]
        x, y = d[:, :-1], d[:, 1:]
        with ctx(), torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            loss = fwd(x, y)
        with ctx():
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    times, losses = [], []
    for i in range(a.warmup + a.steps):
        sync(device)
        t0 = time.perf_counter()
        loss = step(i)
        sync(device)
        dt = time.perf_counter() - t0
        if i >= a.warmup:  # the first steps allocate, autotune and (compile) compile
            times.append(dt)
            losses.append(loss.detach())
        elif i == 0:
            print(f"  {mode} batch {batch}: first step {dt:.2f} s", file=sys.stderr, flush=True)
    last = [float(l) for l in losses]
    if not all(math.isfinite(v) for v in last):
        raise SystemExit(f"torch-{mode}: the loss is not finite")
    tokens = batch * a.seq
    tps = tokens / statistics.median(times)
    fpt = flops_per_token(n_params, a.layers, a.seq, a.dim)
    peak = a.peak if a.peak else peak_flops(device_name(device))
    mfu = tps * fpt / peak if peak else float("nan")
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return dict(
        status="ok",
        tokens_per_s=f"{tps:.1f}",
        mfu=f"{mfu:.4f}",
        batch=batch,
        seq=a.seq,
        step_ms=f"{1e3 * statistics.median(times):.2f}",
        mean_tokens_per_s=f"{tokens * len(times) / sum(times):.1f}",
        steps=len(times),
        params=n_params,
        flops_per_token=fpt,
        peak=f"{peak:.4g}" if peak else "unknown",
        optimizer=opt_kind,
        sdpa=a.sdpa if has_sdpa() else "none",
        compile_mode=a.compile_mode if mode == "compile" else "none",
        max_mem_gib=f"{mem:.1f}",
        loss=f"{last[-1]:.4f}",
        torch=torch.__version__,
        device=device_name(device).replace(" ", "_"),
    )


def result_line(label, fields):
    return "RESULT " + label + " " + " ".join(f"{k}={v}" for k, v in fields.items())


def child_args(a, mode, batch):
    args = [sys.executable, os.path.abspath(__file__), "--mode", mode, "--batch", str(batch)]
    for k in ("vocab", "seq", "dim", "heads", "layers", "steps", "warmup"):
        args += ["--" + k, str(getattr(a, k))]
    args += ["--sdpa", a.sdpa, "--device", a.device, "--compile-mode", a.compile_mode]
    if a.peak:
        args += ["--peak", repr(a.peak)]
    return args


def search(a, mode, start):
    """The largest power-of-two batch from start down that fits; each try in
    its own process. Prints the winner's RESULT line; returns its batch."""
    b = start
    while b >= 1:
        print(f"torch-{mode}: trying batch {b}", file=sys.stderr, flush=True)
        p = subprocess.run(child_args(a, mode, b), stdout=subprocess.PIPE, text=True)
        if p.returncode == 0:
            line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
            if line:
                print(line[-1], flush=True)
                return b
        if p.returncode != OOM_EXIT:
            sys.stdout.write(p.stdout)
            print(f"RESULT torch-{mode} status=failed exit={p.returncode} batch={b}", flush=True)
            return 0
        b //= 2
    print(f"RESULT torch-{mode} status=failed reason=oom_at_batch_1", flush=True)
    return 0


def time_ms(fn, device, reps, warmup=3):
    """Median milliseconds of fn over reps calls (CUDA events on a GPU)."""
    for _ in range(warmup):
        fn()
    sync(device)
    out = []
    for _ in range(reps):
        if device.type == "cuda":
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            fn()
            e1.record()
            e1.synchronize()
            out.append(e0.elapsed_time(e1))
        else:
            t0 = time.perf_counter()
            fn()
            out.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(out)


def kernels(a, device):
    B, H, T, D = a.batch or 16, a.heads, a.seq, a.dim // a.heads
    name = device_name(device).replace(" ", "_")
    if has_sdpa():
        dt = torch.bfloat16
        gen = torch.Generator(device=device).manual_seed(0) if device.type == "cuda" else None
        q, k, v = (torch.randn(B, H, T, D, device=device, dtype=dt, generator=gen).requires_grad_() for _ in range(3))
        dout = torch.randn(B, H, T, D, device=device, dtype=dt, generator=gen)
        ctx = flash_only if device.type == "cuda" and a.sdpa == "flash" else NullCtx

        def fwd():
            with ctx(), torch.no_grad():
                F.scaled_dot_product_attention(q, k, v, is_causal=True)

        def fwd_bwd():
            with ctx():
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                torch.autograd.grad(o, (q, k, v), dout)  # no accumulation into .grad

        f_ms = time_ms(fwd, device, a.reps)
        fb_ms = time_ms(fwd_bwd, device, a.reps)
        # Useful FLOPs, counted as dst's flops_per_token counts attention:
        # forward QK^T and AV, 4 B H T^2 D, halved for the causal mask;
        # backward twice the forward (the flash backward's recomputation of
        # QK^T is not counted).
        f_fl = 4.0 * B * H * T * T * D * 0.5
        print(result_line("kernel-attention", dict(
            batch=B, heads=H, seq=T, head_dim=D, dtype="bf16", sdpa=a.sdpa,
            fwd_ms=f"{f_ms:.4f}", fwd_bwd_ms=f"{fb_ms:.4f}", bwd_ms=f"{fb_ms - f_ms:.4f}",
            fwd_tflops=f"{f_fl / f_ms / 1e9:.1f}", fwd_bwd_tflops=f"{3 * f_fl / fb_ms / 1e9:.1f}",
            device=name)), flush=True)
        del q, k, v, dout
    else:
        print("RESULT kernel-attention status=skipped reason=no_scaled_dot_product_attention", flush=True)
    # Memory bandwidth: a device-to-device copy reads and writes every byte.
    n = a.copy_mib << 20
    src = torch.empty(n, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device, a.reps)
    print(result_line("kernel-copy", dict(bytes=n, ms=f"{ms:.4f}", gb_per_s=f"{2 * n / ms / 1e6:.1f}", device=name)),
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("eager", "compile", "both"), default="both")
    ap.add_argument("--batch", type=int, default=0, help="sequences per step (default: the largest that fits)")
    ap.add_argument("--max-batch", type=int, default=64, help="where the batch search starts (a power of two)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (allocation, autotuning, compilation)")
    ap.add_argument("--peak", type=float, default=0.0, help="peak FLOP/s for MFU (default: from the device name)")
    ap.add_argument("--sdpa", choices=("flash", "default"), default="flash",
                    help="hold attention to the flash kernel, or let PyTorch choose")
    ap.add_argument("--compile-mode", default="default",
                    help="torch.compile mode: default, reduce-overhead, max-autotune, ...")
    ap.add_argument("--kernels", action="store_true", help="per-kernel reference figures instead of training")
    ap.add_argument("--reps", type=int, default=20, help="--kernels: timed repetitions")
    ap.add_argument("--copy-mib", type=int, default=1024, help="--kernels: size of the copied buffer")
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    for k, v in (("vocab", 50257), ("seq", 1024), ("dim", 768), ("heads", 12), ("layers", 12)):
        ap.add_argument("--" + k, type=int, default=v)
    a = ap.parse_args()
    if a.dim % a.heads:
        ap.error("dim must be divisible by heads")
    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(a.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda, but this PyTorch sees no GPU")
        if not has_sdpa():
            raise SystemExit(f"PyTorch {torch.__version__} has no scaled_dot_product_attention; need >= 2.0")
        torch.backends.cuda.matmul.allow_tf32 = True  # any fp32 matmul left outside autocast
        torch.backends.cudnn.allow_tf32 = True
    else:
        print("note: no GPU; running on the CPU (a test of this script, not a benchmark)", file=sys.stderr)
    if a.kernels:
        kernels(a, device)
        return
    modes = ("eager", "compile") if a.mode == "both" else (a.mode,)
    if not hasattr(torch, "compile") and "compile" in modes:
        print(f"RESULT torch-compile status=failed reason=torch_{torch.__version__}_has_no_torch.compile", flush=True)
        modes = tuple(m for m in modes if m != "compile")
    if a.batch == 0:  # search, each try in a child process
        fitted = 0
        for m in modes:
            # torch.compile usually needs less memory than eager: start at
            # twice the eager batch (within --max-batch) rather than the top.
            start = min(a.max_batch, 2 * fitted) if fitted else a.max_batch
            fitted = search(a, m, start) or fitted
        return
    for m in modes:
        try:
            print(result_line("torch-" + m, train(a, device, m, a.batch)), flush=True)
        except Exception as e:  # noqa: BLE001 (any failure is reported, OOM distinctly)
            if is_oom(e):
                print(f"torch-{m}: batch {a.batch} does not fit ({type(e).__name__})", file=sys.stderr)
                sys.exit(OOM_EXIT)
            raise


if __name__ == "__main__":
    main()
