"""The real-GPU check must be ready to run the day a GPU is lent: run its script here on the CPU.

``benchmarks/gpu_bench.py`` runs with ``torch.cuda``'s events and device queries
replaced by host stand-ins and its workloads shrunk, so every line of it executes
(torch CPU tensors take numbaloss's CPU path; the row-kernel timing runs on
Numba's CUDA simulator, which conftest.py turns on).  The timings are meaningless here;
what is checked is that the script runs to the end and that its parity checks pass.
"""

import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


class _Event:
    def __init__(self, enable_timing=True):
        self.t = None

    def record(self):
        self.t = time.perf_counter()

    def synchronize(self):
        pass

    def elapsed_time(self, other):
        return (other.t - self.t) * 1e3


def test_gpu_bench_runs_end_to_end(monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setattr(torch.cuda, "Event", _Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "CPU stand-in")
    import benchmarks.gpu_bench as bench

    monkeypatch.setattr(bench, "dev", torch.device("cpu"))
    from numbaloss.losses.classification import cuda as classification_cuda

    # small rows, one shape per row kernel (warp and block): the simulator runs every thread in Python
    monkeypatch.setattr(classification_cuda, "WARP_ROW_MAX_C", 200)
    monkeypatch.setattr(bench, "CE_SHAPES", ((8, 100), (2, 300)))
    monkeypatch.setattr(bench, "BCE_N", 4096)
    monkeypatch.setattr(bench, "COPY_N", 1 << 16)
    monkeypatch.setattr(bench, "REPEATS", 1)
    monkeypatch.setattr(bench, "ROW_SHAPES", {name: (6, 40) for name in bench.ROW_SHAPES})
    monkeypatch.setattr(bench, "CTC_SHAPES", ((6, 2, 5, 2),))
    bench.main()
    out = capsys.readouterr().out
    assert "all correct: True" in out and "MISMATCH" not in out
    assert out.count("| cross_entropy fwd+grad") == 2 and "Per-call overhead" in out
    assert out.count("| rows ") == 4  # the row kernel alone ran (on Numba's simulator here)
    for name in bench.ROW_SHAPES:  # the row losses: checked, then timed forward and forward+gradient
        assert f"{name} 6x40 loss" in out and f"| {name} fwd+grad 6x40 |" in out
    assert "ctc_loss T=6 N=2 C=5 S=2 grad (logits) | ok" in out and "| ctc_loss fwd+grad T=6 N=2 C=5 S=2 |" in out


def test_gpu_check_script_runs_its_steps(tmp_path):
    """gpu_check.sh with stand-ins for ``nvidia-smi`` and ``python3``: every step it runs names a file
    that exists, and each step's output lands in ``$OUT`` (what the device tool brings back)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.txt"
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'stand-in GPU, 80 GiB'\n")
    # the python3 stand-in records its arguments and fails unless each .py argument exists
    (bin_dir / "python3").write_text(
        "#!/bin/sh\n"
        f"echo \"$*\" >> {log}\n"
        "for a in \"$@\"; do case $a in *.py) [ -e \"$a\" ] || { echo \"missing $a\"; exit 3; };; esac; done\n"
        "echo \"ran $*\"\n"
    )
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    out = tmp_path / "out"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "OUT": str(out)}
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "missing" not in r.stdout, r.stdout
    calls = log.read_text()
    assert "tests/test_cuda.py" in calls and "benchmarks/gpu_bench.py" in calls, calls
    for name in ("gpu_device.txt", "gpu_tests.txt", "gpu_bench.md"):
        assert (out / name).read_text().strip(), name
    assert "stand-in GPU" in (out / "gpu_device.txt").read_text()


def test_tile_stage_script_times_the_library_computation(monkeypatch):
    """benchmarks/ce_tile_stages.py (the README's stage-by-stage figures for #15): its hand-written
    kernel, run whole, gives the library tile kernel's losses and tile sums bit for bit."""
    monkeypatch.syspath_prepend(str(ROOT))
    import benchmarks.ce_tile_stages as stages

    stages.check()
