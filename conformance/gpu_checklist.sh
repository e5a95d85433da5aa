#!/usr/bin/env bash
# Issue 7 on a GPU machine: everything that needs CuPy and a CUDA build of torch, one step
# per call so each stays well under a 10-minute command limit. See docs/backends.md.
#
#   conformance/gpu_checklist.sh STEP [STEP ...]        (from anywhere; runs in the repo root)
#
# Steps, in the order to run them (each writes its output under $OUT, default ./gpu-results):
#   env           versions, the GPU, and whether each backend of the registry is available
#   unit          the unit tests on every backend, CuPy included (pytest -ra tests)
#   conf-f32      conformance, elementwise optimizers, float32:   refoptim on CuPy vs torch CUDA foreach=False
#   conf-f64      the same, float64
#   conf-c64      the same, complex64
#   foreach-f32   refoptim on CuPy vs torch CUDA foreach=True (torch's default path on CUDA), float32
#   foreach-f64   the same, float64
#   foreach-c64   the same, complex64
#   split         Adam only, all dtypes, the two halves of the difference apart:
#                 NumPy vs torch CUDA (torch's CUDA kernels) and CuPy vs torch CPU (CuPy's kernels)
#   bench         python -m refoptim bench --backend cupy, workloads a b c d, the default optimizers
#   all           every step above, in order (only where no per-command limit applies)
#
# Environment: PYTHON (default python), OUT (default gpu-results), STEPS (conformance steps
# per configuration, default 50), REPEATS (bench, default 10).
# A step's exit status is recorded in $OUT/<step>.rc; the script exits with the worst one.
set -uo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python}"
OUT="${OUT:-gpu-results}"
STEPS="${STEPS:-50}"
REPEATS="${REPEATS:-10}"
mkdir -p "$OUT"

# the elementwise optimizers (refoptim.registry), in the matrix's order, as --optimizer arguments
read -ra ELEMENTWISE <<<"$("$PY" -c 'from refoptim.testing import matrix
print(" ".join("--optimizer " + n for n in matrix.optimizer_names() if n not in matrix.EXTENSIONS))')"
if [ "${#ELEMENTWISE[@]}" -eq 0 ]; then
    echo "gpu_checklist.sh: cannot list the elementwise optimizers ($PY -c 'import refoptim' fails?)" >&2
    exit 1
fi

record() {  # record NAME COMMAND...: run it, keep stdout+stderr and the exit status
    local name="$1"; shift
    echo "== $name: $*"
    "$@" >"$OUT/$name.txt" 2>&1
    local rc=$?
    echo "$rc" >"$OUT/$name.rc"
    tail -n 25 "$OUT/$name.txt"
    echo "== $name: exit $rc (full output: $OUT/$name.txt)"
    return "$rc"
}

conf() {  # conf NAME DTYPE EXTRA...: the elementwise matrix in one dtype
    local name="$1" dtype="$2"; shift 2
    record "$name" "$PY" -m refoptim conformance "${ELEMENTWISE[@]}" --dtype "$dtype" --steps "$STEPS" \
        --no-schedulers --width 200 --json "$OUT/$name.json" "$@"
}

step() {
    case "$1" in
        env)
            record env "$PY" - <<'EOF'
import platform, subprocess
import numpy, torch
print("python", platform.python_version(), "| numpy", numpy.__version__, "| torch", torch.__version__,
      "| torch CUDA", torch.version.cuda, "| cuda available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("torch device:", torch.cuda.get_device_name())
try:
    import cupy
    print("cupy", cupy.__version__, "| CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(),
          "| devices", cupy.cuda.runtime.getDeviceCount())
except Exception as exc:  # noqa: BLE001
    print("cupy: not usable:", type(exc).__name__, exc)
from refoptim.testing import backends
for name in backends.BACKEND_NAMES:
    b = backends.get_backend(name)
    print(f"backend {name}: {'available' if b.available else 'UNAVAILABLE: ' + b.reason}")
try:
    print(subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv"],
                         capture_output=True, text=True, timeout=30).stdout)
except Exception as exc:  # noqa: BLE001
    print("nvidia-smi:", exc)
EOF
            ;;
        unit) record unit "$PY" -m pytest -p no:cacheprovider -q -ra tests ;;
        conf-f32) conf conf-f32 float32 --backend cupy --torch-device cuda ;;
        conf-f64) conf conf-f64 float64 --backend cupy --torch-device cuda ;;
        conf-c64) conf conf-c64 complex64 --backend cupy --torch-device cuda ;;
        foreach-f32) conf foreach-f32 float32 --backend cupy --torch-device cuda --torch-foreach ;;
        foreach-f64) conf foreach-f64 float64 --backend cupy --torch-device cuda --torch-foreach ;;
        foreach-c64) conf foreach-c64 complex64 --backend cupy --torch-device cuda --torch-foreach ;;
        split)
            local worst=0
            record split-numpy-vs-cuda "$PY" -m refoptim conformance --optimizer Adam --steps "$STEPS" --no-schedulers \
                --width 200 --json "$OUT/split-numpy-vs-cuda.json" --backend numpy --torch-device cuda || worst=$?
            record split-cupy-vs-cpu "$PY" -m refoptim conformance --optimizer Adam --steps "$STEPS" --no-schedulers \
                --width 200 --json "$OUT/split-cupy-vs-cpu.json" --backend cupy --torch-device cpu || worst=$?
            return "$worst"
            ;;
        bench)
            record bench "$PY" -m refoptim bench --backend cupy --workload a --workload b --workload c --workload d \
                --repeats "$REPEATS" --json "$OUT/bench.json"
            ;;
        all)
            local s worst=0 rc
            for s in env unit conf-f32 conf-f64 conf-c64 foreach-f32 foreach-f64 foreach-c64 split bench; do
                step "$s"; rc=$?
                (( rc > worst )) && worst=$rc
            done
            return "$worst"
            ;;
        *)
            echo "unknown step: $1 (see the head of $0)" >&2
            return 2
            ;;
    esac
}

if [ "$#" -eq 0 ]; then
    sed -n '2,23p' "$0"
    exit 2
fi
status=0
for s in "$@"; do
    step "$s"; rc=$?
    (( rc > status )) && status=$rc
done
exit "$status"
