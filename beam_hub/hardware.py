"""What the CPU can do, read without importing TensorFlow: native bf16 arithmetic."""

from __future__ import annotations

import functools
import logging

from beam_hub import settings

log = logging.getLogger(__name__)

#: CPU flags (Linux /proc/cpuinfo) of native bf16 matrix arithmetic: AVX-512 BF16 and AMX.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
PRECISIONS = ("fp32", "bf16")


@functools.cache
def _cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16() -> bool:
    """True when the CPU has native bf16 matmuls (AVX512_BF16 or AMX); BEAM_HUB_NATIVE_BF16 overrides."""
    override = settings.native_bf16_override()
    if override is not None:
        return override
    return bool(_cpu_flags() & set(BF16_FLAGS))


def choose_precision(requested: str) -> str:
    """``fp32`` or ``bf16`` as asked; ``auto``: bf16 where the CPU computes it natively, else fp32 (logged)."""
    if requested in PRECISIONS:
        return requested
    if requested != "auto":
        raise ValueError(f"precision must be one of fp32, bf16, auto; got {requested!r}")
    chosen = "bf16" if native_bf16() else "fp32"
    log.info(
        "precision=auto: %s (%s)",
        chosen,
        "this CPU has native bf16"
        if chosen == "bf16"
        else "this CPU has no native bf16 (AVX512_BF16 or AMX)",
    )
    return chosen
