"""Multi-threaded CPU kernels of the sparse TopK step (cpu_kernels.cc), built on first use and called
through JAX's FFI.

On XLA CPU, `lax.top_k` is one single-threaded runtime call, and the sparse backward's gathers and
scatter-adds run as loops of small ops; together they took more than half of a TopK train step. The C++
kernels beside this module do each in one call over XLA's intra-op thread pool and give the same results:
the top-k the same indices and values as `lax.top_k` (ties to the lower index, its total order of floats),
the sums the same slot order in float32. `screened_top_k` also replaces the encoder's float32 GEMM with a
bfloat16 one and float32 dots where that cannot decide: the top k of the float32 pre-activations, their values
summed in another order than XLA's GEMM.

The kernels are compiled with the system's C++ compiler (`CXX`, else `c++`/`g++`) against jaxlib's FFI
headers into `~/.cache/saelab/kernels` (`SAELAB_KERNEL_CACHE` moves it), once per source, jaxlib version
and CPU. `enabled()` says whether they serve this process: only on the CPU backend with one device (the FFI
call is not partitioned over a mesh), unless `SAELAB_CPU_KERNELS=0`; without a compiler or on a failed
build a warning names the cause once, and saelab's XLA kernels run instead, with the same results.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib

__all__ = [
    "enabled",
    "fast_bfloat16",
    "top_k_bias",
    "screened_top_k",
    "gather_sum",
    "gather_dot",
    "scatter_rows",
    "build",
]

SOURCE = Path(__file__).with_name("cpu_kernels.cc")
TARGETS = (
    "saelab_top_k_bias",
    "saelab_screened_top_k",
    "saelab_screen_prep",
    "saelab_gather_sum",
    "saelab_gather_dot",
    "saelab_scatter_rows",
)
BF16_ROUNDING = 2.0**-9
"""Unit roundoff of a float32 rounded to bfloat16 (8 significant bits, round to nearest even)."""
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno", "-ffp-contract=off")


def enabled() -> bool:
    """True when the kernels serve this process: CPU backend, one device, not switched off, built."""
    if os.environ.get("SAELAB_CPU_KERNELS", "1").lower() in ("0", "off", "false", "no"):
        return False
    if jax.default_backend() != "cpu" or jax.device_count() != 1:
        return False
    return _registered()


def fast_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (avx512_bf16 or amx_bf16), which makes a bfloat16
    GEMM several times faster than a float32 one; where it does not, screening would cost more than it saves."""
    flags = _cpu_id().decode()
    return " avx512_bf16" in flags or " amx_bf16" in flags


def build(cache: Path | None = None) -> Path:
    """The compiled kernel library for this source, jaxlib and CPU, compiling it if it is not cached."""
    if cache is None:
        cache = Path(os.environ.get("SAELAB_KERNEL_CACHE", "~/.cache/saelab/kernels")).expanduser()
    src = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([src, jaxlib.__version__.encode(), " ".join(FLAGS).encode(), _cpu_id()]))
    lib = cache / f"cpu_kernels-{key.hexdigest()[:16]}.so"
    if lib.exists():
        return lib
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        out = Path(tmp) / lib.name
        cmd = [cxx, *FLAGS, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        os.replace(out, lib)  # atomic: a concurrent build replaces it with the same bytes
    return lib


@functools.cache
def _registered() -> bool:
    try:
        lib = ctypes.cdll.LoadLibrary(str(build()))
    except (OSError, RuntimeError) as e:
        warnings.warn(f"saelab's CPU kernels are unavailable, the XLA kernels run instead: {e}", stacklevel=3)
        return False
    for name in TARGETS:
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
    return True


@functools.cache
def _cpu_id() -> bytes:
    """The CPU's model and instruction-set flags (the library is built with -march=native)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags"))})).encode()
    except OSError:
        return platform.processor().encode()


def _call(name: str, out, *args: jax.Array):
    if not _registered():
        raise RuntimeError("saelab's CPU kernels did not build (see the warning); check enabled() first")
    return jax.ffi.ffi_call(name, out, vmap_method="sequential")(*args)


def top_k_bias(pre: jax.Array, bias: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """`lax.top_k(pre + bias, k)` for float32 pre (rows, n) and bias (n,): values (rows, k), int32 indices."""
    rows = pre.shape[0]
    out = (jax.ShapeDtypeStruct((rows, k), jnp.float32), jax.ShapeDtypeStruct((rows, k), jnp.int32))
    vals, idx = _call("saelab_top_k_bias", out, pre.astype(jnp.float32), bias.astype(jnp.float32))
    return vals, idx


def screened_top_k(x: jax.Array, W_enc: jax.Array, b_enc: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """The k largest of the float32 pre-activations x @ W_enc + b_enc per row (values and int32 indices, sorted
    descending, ties to the lower index), computed from a bfloat16 GEMM and an exact float32 recomputation of
    the few latents it cannot rule out.

    With dx = x - bf16(x) and dW = W - bf16(W), the estimate bf16(x) . bf16(W_j) misses x . W_j by
    dx . bf16(W_j) + bf16(x) . dW_j + dx . dW_j plus the float32 accumulation of both sums (gamma_d each), so by
    Cauchy-Schwarz by at most ||dx|| (||bf16(W_j)|| + ||dW_j||) + ||bf16(x)|| ||dW_j|| + 2 gamma_d ||x|| ||W_j||
    (with 2^-10 of it to spare for the norms' own rounding). The values are float32 dot products summed in
    another order than XLA's GEMM: equal to its pre-activations up to float32 rounding, not bit for bit.
    """
    d, n = W_enc.shape
    gamma = 2.1 * d * 2.0**-24 / (1 - d * 2.0**-24)
    x = x.astype(jnp.float32)
    prep = (jax.ShapeDtypeStruct((n, d), jnp.float32), jax.ShapeDtypeStruct((d, n), jnp.bfloat16))
    prep += (jax.ShapeDtypeStruct((3, n), jnp.float32),)
    Wt, Wb, latent_terms = _call("saelab_screen_prep", prep, W_enc.astype(jnp.float32))  # one pass over W
    xb = x.astype(jnp.bfloat16)
    lo_pre = jnp.matmul(xb, Wb, preferred_element_type=jnp.float32)  # (batch, d_sae)
    xbf = xb.astype(jnp.float32)
    norm = lambda a: jnp.sqrt(jnp.sum(a * a, axis=1))
    row_terms = jnp.stack([norm(x - xbf), norm(xbf), gamma * norm(x)], 1) * (1 + 2.0**-10)  # (batch, 3)
    rows = x.shape[0]
    out = (jax.ShapeDtypeStruct((rows, k), jnp.float32), jax.ShapeDtypeStruct((rows, k), jnp.int32))
    return _call("saelab_screened_top_k", out, lo_pre, x, Wt, b_enc.astype(jnp.float32), row_terms, latent_terms)


def gather_sum(w: jax.Array, idx: jax.Array, table: jax.Array) -> jax.Array:
    """`sum_j w[b, j] * table[idx[b, j]]`, (rows, d) float32."""
    out = jax.ShapeDtypeStruct((w.shape[0], table.shape[1]), jnp.float32)
    return _call("saelab_gather_sum", out, w.astype(jnp.float32), idx.astype(jnp.int32), table.astype(jnp.float32))


def gather_dot(rows: jax.Array, idx: jax.Array, table: jax.Array) -> jax.Array:
    """`<rows[b], table[idx[b, j]]>` for every slot, (rows, k) float32."""
    out = jax.ShapeDtypeStruct(idx.shape, jnp.float32)
    args = rows.astype(jnp.float32), idx.astype(jnp.int32), table.astype(jnp.float32)
    return _call("saelab_gather_dot", out, *args)


def scatter_rows(w: jax.Array, idx: jax.Array, rows: jax.Array, n_out: int) -> jax.Array:
    """`out[idx[b, j]] += w[b, j] * rows[b]` from zeros, (n_out, d) float32."""
    out = jax.ShapeDtypeStruct((n_out, rows.shape[1]), jnp.float32)
    args = w.astype(jnp.float32), idx.astype(jnp.int32), rows.astype(jnp.float32)
    return _call("saelab_scatter_rows", out, *args)
