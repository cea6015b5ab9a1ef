#!/usr/bin/env bash
# The speed figures of docs/benchmarks.md on one GPU, in one prepared run.
#
# Usage (repository root, on the GPU machine):
#   OUT=/tmp/out DEADLINE_S=480 bash benchmarks/gpu_suite.sh
#   SMOKE=1 bash benchmarks/gpu_suite.sh    # every item at toy size, to check the script on a CPU
#
# Runs, in order of importance, until DEADLINE_S seconds have passed (an item whose estimate no
# longer fits is skipped and listed as such): the reference ViT step (experiments 1 and 7) against
# PyTorch in float32 and bfloat16, scanned chunks of 16 steps, exp 7 with the head-major attention
# that CPUs use and (bfloat16) with cuDNN's (--attention), the 1-layer LSTM LM step against
# PyTorch (cuDNN), and whole epochs of train.py with the device-resident input path on
# synthetic_cifar10 (CIFAR-10's shapes; real files cannot travel to the machine), and a profile of
# the exp 7 float32 step (benchmarks/profile_step.py; its tables, summary and perfetto trace land in
# $OUT as profile_vit7_f32.*).
# Every command's output goes to $OUT/suite.log; the item table is printed last.
#
# Wheels of packages the machine lacks can be put in .whl/ (see docs/benchmarks.md); they are
# installed into /tmp/site first.

set -u
OUT=${OUT:-/tmp/curvelab-gpu-suite}
DEADLINE_S=${DEADLINE_S:-480}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
LOG="$OUT/suite.log"
SUMMARY=()
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 PY
# Toy sizes appended after each item's own arguments (the last occurrence of a flag wins).
if [[ -n ${SMOKE:-} ]]; then
  STEP_SMOKE=(--steps=2 --repeats=1 --batch_size=16 --steps_per_call=2)
  LM_SMOKE=(--steps=1 --repeats=1 --vocab=2000)
  EPOCH_SMOKE=(--config.dataset.train_split=train[:256] --config.dataset.val_split=train[45000:45128]
               --config.dataset.test_split=test[:128] --config.loop.num_epochs=1 --config.loop.batch_size=64)
else
  STEP_SMOKE=() LM_SMOKE=() EPOCH_SMOKE=()
fi

if compgen -G '.whl/*.whl' >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >>"$LOG" 2>&1 || echo 'wheel install failed' | tee -a "$LOG"
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

# If curvelab does not import with the machine's own flax/optax/orbax/chex, the versions it is
# developed with (wheels in .whl/pinned/) take their place.
if ! $PY -c 'import train, benchmarks.common' >>"$LOG" 2>&1 && compgen -G '.whl/pinned/*.whl' >/dev/null; then
  echo 'curvelab did not import; installing the pinned flax/optax/orbax/chex' | tee -a "$LOG"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/pinned/*.whl >>"$LOG" 2>&1
fi

{
  date -u; git rev-parse --short HEAD 2>/dev/null || cat .whl/COMMIT 2>/dev/null; nvidia-smi -L
  $PY -c 'import jax, flax, optax, chex, orbax.checkpoint as ocp, torch; print("jax", jax.__version__,
jax.devices(), "flax", flax.__version__, "optax", optax.__version__, "chex", chex.__version__,
"orbax", getattr(ocp, "__version__", "?"), "torch", torch.__version__)'
} 2>&1 | tee -a "$LOG"

# item NAME ESTIMATE_S COMMAND...: runs COMMAND if ESTIMATE_S still fits before the deadline.
item() {
  local name=$1 estimate=$2; shift 2
  if (( SECONDS + estimate > DEADLINE_S )); then
    SUMMARY+=("$name: skipped (estimate ${estimate}s, ${SECONDS}s used of ${DEADLINE_S}s)")
    return
  fi
  local start=$SECONDS
  echo "=== $name: $*" | tee -a "$LOG"
  # bash -c so that a shell function (epoch_run, exported below) runs under timeout too.
  timeout $(( DEADLINE_S - SECONDS + 30 )) bash -c '"$@"' _ "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  SUMMARY+=("$name: rc=$rc in $(( SECONDS - start ))s")
}

# epoch_run NAME CONFIG EXTRA...: three epochs of train.py, then the per-epoch times it recorded.
epoch_run() {
  local name=$1 config=$2; shift 2
  local dir=/tmp/curvelab-suite-$name
  rm -rf "$dir"
  $PY train.py --config="$config" --workdir="$dir" --config.dataset.name=synthetic_cifar10 \
    --config.speed.input_mode=device --config.loop.num_epochs=3 --config.loop.metric_writer=events "$@" || return $?
  $PY - "$dir" <<'EOF'
import json, sys
for line in open(f'{sys.argv[1]}/history.jsonl'):
  r = json.loads(line)
  if 'epoch_time_s' in r:
    print(f"epoch {r['epoch']}: {r['epoch_time_s']:.3f} s train, {r.get('eval_time_s', 0):.3f} s "
          f"eval, {r.get('examples_per_s', 0):,.0f} examples/s, peak "
          f"{(r.get('peak_memory_bytes') or 0) / 2**20:.0f} MiB")
EOF
}
export -f epoch_run

VIT7=configs/vit_postnorm.py:layers=6,optimizer=adamw
item vit_f32 70 $PY benchmarks/vit_step.py --only=1,7 --steps=30 --repeats=5 --torch "${STEP_SMOKE[@]}"
item vit_bf16_scan16 60 $PY benchmarks/vit_step.py --only=1,7 --dtype=bfloat16 --steps_per_call=16 \
  --steps=64 --repeats=5 --torch "${STEP_SMOKE[@]}"
# The CPU attention path (custom gradient, head-major) on the GPU, against vit_f32's exp 7 above.
item vit7_head_major_f32 40 $PY benchmarks/vit_step.py --only=7 --steps=30 --repeats=5 \
  --attention=head_major "${STEP_SMOKE[@]}"
item lstm_f32 60 $PY benchmarks/lm_step.py --only=lm1 --steps=10 --repeats=3 --torch "${LM_SMOKE[@]}"
item lstm_bf16_unroll8 60 $PY benchmarks/lm_step.py --only=lm1 --steps=10 --repeats=3 \
  --dtype=bfloat16 --set=model.scan_unroll=8 --torch "${LM_SMOKE[@]}"
item epoch_vit7_f32 90 epoch_run vit7_f32 $VIT7 --config.speed.steps_per_call=16 "${EPOCH_SMOKE[@]}"
item epoch_vit7_bf16 90 epoch_run vit7_bf16 $VIT7 --config.speed.steps_per_call=16 \
  --config.speed.compute_dtype=bfloat16 "${EPOCH_SMOKE[@]}"
item epoch_resnet20_bf16 80 epoch_run resnet20_bf16 configs/cnn.py:arch=resnet \
  --config.speed.steps_per_call=16 --config.speed.compute_dtype=bfloat16 "${EPOCH_SMOKE[@]}"
item vit_f32_scan16 50 $PY benchmarks/vit_step.py --only=7 --steps_per_call=16 --steps=64 \
  --repeats=5 "${STEP_SMOKE[@]}"
item profile_vit7_f32 60 bash -c 'rm -rf /tmp/curvelab-suite-profile && \
  $PY benchmarks/profile_step.py --config=$0 --steps=20 --top=60 \
  --trace_dir=/tmp/curvelab-suite-profile "--json=$1/profile_vit7_f32.json" "${@:2}" \
  > "$1/profile_vit7_f32.txt" && \
  cp "$(find /tmp/curvelab-suite-profile -name perfetto_trace.json.gz | head -1)" \
  "$1/profile_vit7_f32_trace.json.gz"' $VIT7 "$OUT" "${STEP_SMOKE[@]}"
item vit7_head_major_bf16_scan16 40 $PY benchmarks/vit_step.py --only=7 --dtype=bfloat16 \
  --steps_per_call=16 --steps=64 --repeats=5 --attention=head_major "${STEP_SMOKE[@]}"
item vit7_cudnn_bf16_scan16 40 $PY benchmarks/vit_step.py --only=7 --dtype=bfloat16 \
  --steps_per_call=16 --steps=64 --repeats=5 --attention=cudnn "${STEP_SMOKE[@]}"
item epoch_resnet18_bf16 80 epoch_run resnet18_bf16 configs/cnn.py:arch=resnet18 \
  --config.speed.steps_per_call=16 --config.speed.compute_dtype=bfloat16 "${EPOCH_SMOKE[@]}"

echo "=== summary (${SECONDS}s)" | tee -a "$LOG"
printf '%s\n' "${SUMMARY[@]}" | tee -a "$LOG"
grep -E ' \| |^epoch |^ViT train|^LM train' "$LOG" | tail -60
