"""What a bench records about its machine: CPU model, vector extensions and library versions."""

from __future__ import annotations

from saelab.runtime.machine import context_fields, cpu_info, machine, versions

XEON = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16 avx512_vnni amx_tile amx_bf16
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8488C
"""
EPYC = "model name : AMD EPYC 7B13\nflags : fpu sse2 avx avx2 fma\n"


def test_cpu_info_reads_model_and_widest_isa() -> None:
    xeon = cpu_info(XEON)
    assert xeon.cpu == "Intel(R) Xeon(R) Platinum 8488C"
    assert xeon.isa == "amx"
    assert xeon.cpu_flags == ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16"]
    epyc = cpu_info(EPYC)
    assert (epyc.cpu, epyc.isa, epyc.cpu_flags) == ("AMD EPYC 7B13", "avx2", ["avx2", "fma"])


def test_versions_name_absent_packages() -> None:
    v = versions(("jax", "no-such-package-saelab"))
    assert v["jax"].count(".") >= 1
    assert v["no-such-package-saelab"] == "absent"


def test_context_fields_are_one_token_each() -> None:
    m = machine()
    assert {"cpu", "isa", "cpu_flags", "thp", "malloc_hugetlb"} <= set(m)  # the named parts, flattened
    ctx = context_fields(m)
    assert {"cpu", "isa", "cores", "jax", "jaxlib", "torch", "sae_lens", "transformers"} <= set(ctx)
    assert all(" " not in str(v) for v in ctx.values())
    assert int(ctx["cores"]) >= 1
