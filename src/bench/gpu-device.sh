#!/usr/bin/env bash
# The GPU benchmark (docs/gpu.md), for a lent NVIDIA machine (see ../shared/gpu/README.md), run from the
# project root after `npm install && npm run build` here and `../shared/gpu/pack-for-device.sh` (which packs
# Node, the Vulkan loader, node_modules and dist/ into .device-pack). On the device:
#   bash src/bench/gpu-device.sh            (prints the adapter, then one JSON line per benchmark)
# It writes a random-weight bert-base-cased-shaped teacher itself (distill make-teacher), so nothing is
# downloaded; the tiny teacher is the embedded one.
set -euo pipefail
if [ -f .device-pack/unpack.sh ]; then source .device-pack/unpack.sh; fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
node --version
distill() { node dist/src/cli.js "$@"; }
base=${TMPDIR:-/tmp}/distill-bert-base-random
[ -f "$base/model.onnx" ] || distill make-teacher --shape base --out "$base"
# The embedded teacher's weights may be left out of the tree sent to the device (its size limit): then a
# random-weight teacher of the same shape stands in, which times the same.
tiny=teacher/tiny-bert-cased
if [ ! -f "$tiny/model.onnx" ]; then tiny=${TMPDIR:-/tmp}/distill-tiny-random; [ -f "$tiny/model.onnx" ] || distill make-teacher --shape tiny --out "$tiny"; fi
# WebGPU student + WebGPU teacher, with the full soft targets and with top-k ones (soft_targets_topk), with
# --profile (kernel times and the GPU traffic of one update); then the teacher on the CPU provider. Tiny and base.
run() { distill bench "$@" || echo "bench failed: $*"; }
run --teacher "$tiny" --backend webgpu --teacher-ep webgpu --batch 32 --seq 128 --steps 5
run --teacher "$tiny" --backend webgpu --teacher-ep webgpu --batch 32 --seq 128 --steps 5 --topk 32
run --teacher "$base" --backend webgpu --teacher-ep webgpu --batch 32 --seq 128 --steps 5 --profile
run --teacher "$base" --backend webgpu --teacher-ep webgpu --batch 32 --seq 128 --steps 5 --profile --topk 32
run --teacher "$base" --backend webgpu --teacher-ep webgpu --batch 32 --seq 128 --steps 5 --topk 8
# Mixed precision (f16 operands, fp32 sums: student/kernels/matmul-webgpu.ts) against the fp32 line above it.
run --teacher "$base" --backend webgpu --teacher-ep webgpu --batch 32 --seq 128 --steps 5 --topk 32 --precision fp16-mixed
# distill's tiled fp32 product program (webgpu_products "tiled") against tfjs's kernel (the top-32 fp32 line above).
run --teacher "$base" --backend webgpu --teacher-ep webgpu --batch 32 --seq 128 --steps 5 --topk 32 --products tiled
run --teacher "$base" --backend webgpu --teacher-ep cpu --threads 0 --batch 32 --seq 128 --steps 3 --topk 32
