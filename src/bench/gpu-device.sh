#!/usr/bin/env bash
# The GPU benchmark of the README, for a lent NVIDIA machine (see ../shared/gpu/README.md), run from the
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
# WebGPU student + WebGPU teacher, then the teacher on the CPU provider for comparison; tiny and base shapes.
distill bench --teacher teacher/tiny-bert-cased --backend webgpu --teacher-ep webgpu --batch 32 --seq 128 --steps 5
distill bench --teacher "$base" --backend webgpu --teacher-ep webgpu --batch 32 --seq 128 --steps 5 --profile
distill bench --teacher "$base" --backend webgpu --teacher-ep cpu --batch 32 --seq 128 --steps 3
