#!/usr/bin/env python3
"""quant_refcheck.py - kvchat's block decoders against the gguf Python
package's reference decoders (gguf.quants), bit for bit.

Run by tests/quant_refcheck.sh (ctest quant_refcheck) with the venv that
scripts/gguf-venv makes:  quant_refcheck.py QUANT_TOOL [MODEL.gguf]

For every block type kvchat computes with, blocks from four sources go through
both decoders (kvchat's via QUANT_TOOL's 'dequant') and every float must have
the same bits (NaN: both NaN):
  bytes     uniformly random bytes: every code, every scale, fp16 subnormals,
            infinities and NaNs included
  synth     kvchat's random rows (quant_random_row), what synthetic models hold
  gauss     kvchat's quantiser on Gaussian floats
  real      real weights: MODEL's tensors dequantised by gguf, then quantised
            by kvchat and, where gguf.quants can quantise the type (MXFP4 and
            the 32-element types), by gguf too
No GGUF that holds Q2_K, Q3_K, IQ4_NL, IQ4_XS or MXFP4 tensors and is small
enough ships in a package, so 'real' blocks are made from SmolLM2's weights.
For MXFP4, whose quantiser kvchat takes from ggml's reference rule, the bytes
of the two quantisers are compared as well.

Prints one line per type and source, then 'N passed, N failed'; exits 1 on
any difference.
"""
import subprocess
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, quants
from gguf.constants import GGML_QUANT_SIZES

TYPES = ["Q2_K", "Q3_K", "IQ4_NL", "IQ4_XS", "MXFP4",
         "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]
N_ELEMS = 256 * 512  # per source: 4096 blocks of 32 or 512 of 256


def tool(exe, args, data=b""):
    r = subprocess.run([exe] + args, input=data, capture_output=True)
    if r.returncode != 0:
        raise SystemExit(f"quant_refcheck: {exe} {' '.join(args)}: {r.stderr.decode().strip()}")
    return r.stdout


def compare(ours, ref):
    """Indices where the floats differ in bits (two NaNs count as equal)."""
    a, b = ours.view(np.uint32), ref.view(np.uint32)
    both_nan = np.isnan(ours) & np.isnan(ref)
    return np.nonzero((a != b) & ~both_nan)[0]


def real_floats(model, n):
    """N real weights: the float tensors of MODEL as gguf dequantises them,
    taken in file order from several layers, so the blocks see real
    distributions (embeddings, attention, FFN)."""
    reader = GGUFReader(model)
    parts, have = [], 0
    for t in reader.tensors:
        if len(t.shape) < 2:
            continue
        w = quants.dequantize(t.data, t.tensor_type).astype(np.float32).ravel()
        take = w[: 256 * 64]  # 64 super-blocks from each tensor
        parts.append(take)
        have += take.size
        if have >= n:
            break
    x = np.concatenate(parts)[:n]
    return x[: x.size // 256 * 256]


def main():
    if len(sys.argv) not in (2, 3):
        raise SystemExit("usage: quant_refcheck.py QUANT_TOOL [MODEL.gguf]")
    exe = sys.argv[1]
    model = sys.argv[2] if len(sys.argv) == 3 else None
    rng = np.random.default_rng(20240611)
    gauss = (rng.standard_normal(N_ELEMS) * 0.05).astype(np.float32)
    gauss[::97] *= 20  # outliers, as real weights have
    real = real_floats(model, N_ELEMS) if model else None
    if real is None:
        print("quant_refcheck: no model given: the 'real' source is left out")
    passed = failed = 0
    for name in TYPES:
        qt = T[name]
        bs, ts = GGML_QUANT_SIZES[qt]
        nb = N_ELEMS // bs
        sources = {
            "bytes": rng.integers(0, 256, size=nb * ts, dtype=np.uint8).tobytes(),
            "synth": tool(exe, ["random", name, str(N_ELEMS), "7"]),
            "gauss": tool(exe, ["quant", name], gauss.tobytes()),
        }
        if real is not None:
            sources["real"] = tool(exe, ["quant", name], real.tobytes())
            try:
                ref_q = quants.quantize(real, qt).tobytes()
            except NotImplementedError:
                ref_q = None
            if ref_q is not None:
                sources["real-gguf"] = ref_q
                if name == "MXFP4":
                    same = np.frombuffer(ref_q, np.uint8).reshape(-1, ts) == \
                        np.frombuffer(sources["real"], np.uint8).reshape(-1, ts)
                    bad_blocks = int((~same.all(axis=1)).sum())
                    ok = bad_blocks == 0
                    passed, failed = passed + ok, failed + (not ok)
                    print(f"{'ok' if ok else 'FAIL':4} {name:6} quantiser bytes vs gguf.quants.quantize: "
                          f"{same.shape[0]} blocks, {bad_blocks} differ")
        for src, blocks in sources.items():
            arr = np.frombuffer(blocks, dtype=np.uint8).reshape(-1, ts)
            with np.errstate(all="ignore"):
                ref = quants.dequantize(arr, qt).astype(np.float32).ravel()
            ours = np.frombuffer(tool(exe, ["dequant", name], blocks), dtype=np.float32)
            if ours.size != ref.size:
                bad = np.arange(max(ours.size, ref.size))
            else:
                bad = compare(ours, ref)
            ok = bad.size == 0
            passed, failed = passed + ok, failed + (not ok)
            line = f"{'ok' if ok else 'FAIL':4} {name:6} {src:9} {arr.shape[0]:5} blocks, {ref.size:7} floats"
            if not ok:
                i = int(bad[0])
                got = ours[i] if i < ours.size else float("nan")
                want = ref[i] if i < ref.size else float("nan")
                line += f": {bad.size} differ, first element {i} (block {i // bs}): kvchat {got!r}, gguf {want!r}"
            print(line)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
