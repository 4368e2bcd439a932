"""Where a Python-measured result came from, and where it goes: the CPU slug and provenance
helpers shared by peers.py and precision_peers.py.

Results are kept per CPU under results/<cpu-slug>/. The slug follows the same rule as
bench-harness/src/machine.rs (`slug_from`), read from /proc/cpuinfo:

- x86-64: <vendor>-<name>-<family>-<model>: vendor `intel` (GenuineIntel) or `amd`
  (AuthenticAMD), else the vendor id lower-cased; name is the first word of `model name` after
  dropping (R), (TM) and the vendor's own word, lower-cased; family and model are the decimal
  `cpu family` and `model` fields: intel-xeon-6-167, intel-xeon-6-207, amd-epyc-25-1.
- aarch64: aarch64-<implementer>-<part> (hex without 0x), e.g. aarch64-41-d40;
  aarch64-qemu when /proc/cpuinfo has no `CPU implementer` (qemu user mode).
- anything else, or a field missing: <arch>-unknown.

    python3 tools/onnx-reference/machine.py     # prints this machine's slug
"""
import os
import platform
import re
import shutil
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RESULTS = os.path.join(ROOT, "results")
# The flags that matter to these kernels, in the order provenance lines print them.
# The same list as kernels/src/cpu.rs (FLAGS), the one the Rust side reports.
FLAGS = ["avx2", "fma", "f16c", "avx512f", "avx512vl", "avx512bw", "avx512dq", "avx512_vnni", "avx_vnni",
         "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "neon", "fphp", "asimdhp",
         "asimddp", "bf16", "i8mm", "sve"]


def cpuinfo_text():
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def field(info, name):
    """The value of the first /proc/cpuinfo line whose key is exactly `name`."""
    for line in info.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip() == name:
            return v.strip()
    return None


def _clean(s):
    return re.sub(r"[^a-z0-9]", "", s.lower())


def slug_from(info, arch):
    """The CPU slug of the machine whose /proc/cpuinfo is `info` (module docstring)."""
    if arch in ("x86_64", "AMD64", "x86", "i686"):
        vendor_id, name = field(info, "vendor_id"), field(info, "model name")
        family, model = field(info, "cpu family"), field(info, "model")
        if None in (vendor_id, name, family, model):
            return f"{arch}-unknown"
        vendor = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(vendor_id, _clean(vendor_id))
        words = [_clean(w) for w in name.replace("(R)", " ").replace("(TM)", " ").replace("(tm)", " ").split()]
        short = next((w for w in words if w and w != vendor), "cpu")
        return f"{vendor}-{short}-{_clean(family)}-{_clean(model)}"
    if arch in ("aarch64", "arm64"):
        imp, part = field(info, "CPU implementer"), field(info, "CPU part")
        if imp is None or part is None:
            return "aarch64-qemu"
        return f"aarch64-{_clean(imp.removeprefix('0x'))}-{_clean(part.removeprefix('0x'))}"
    return f"{arch}-unknown"


def cpu_slug():
    return slug_from(cpuinfo_text(), platform.machine())


def results_dir():
    """results/<cpu-slug>/ of this machine, created."""
    d = os.path.join(RESULTS, cpu_slug())
    os.makedirs(d, exist_ok=True)
    return d


def cpu_line():
    """`name, family F model M (N logical cores), flags: ...` as bench-harness writes it."""
    info = cpuinfo_text()
    name = field(info, "model name") or platform.processor() or "unknown CPU"
    fam, model = field(info, "cpu family"), field(info, "model")
    imp, part = field(info, "CPU implementer"), field(info, "CPU part")
    ident = f", family {fam} model {model}" if fam and model else (
        f", implementer {imp} part {part}" if imp and part else "")
    have = set((field(info, "flags") or field(info, "Features") or "").split())
    flags = " ".join(f for f in FLAGS if f in have)
    return f"{name}{ident} ({os.cpu_count()} logical cores), flags: {flags}"


def regenerate_index():
    """Rebuilds results/README.md with bench-harness's `results-index` (the one generator)."""
    exe = os.path.join(ROOT, "target", "release", "results-index")
    cmd = [exe] if os.path.exists(exe) else (
        ["cargo", "run", "--release", "-q", "-p", "bench-harness", "--bin", "results-index"]
        if shutil.which("cargo") else None)
    if cmd is None:
        print("results/README.md not regenerated: run `cargo run --release -p bench-harness --bin results-index`")
        return
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    print((r.stderr or r.stdout).strip() if r.returncode == 0
          else f"results/README.md not regenerated ({' '.join(cmd)} failed): {r.stderr.strip()[-300:]}")


if __name__ == "__main__":
    print(cpu_slug())
