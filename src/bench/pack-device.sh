#!/usr/bin/env bash
# Pack what the GPU benchmark (src/bench/gpu-device.sh) needs on a lent device into .device-pack, within the
# device tool's 64 MiB (working tree + carried paths): Node and the Vulkan .debs from ../shared/gpu/pack-for-device.sh,
# then dist/ and the runtime packages only (no dev tools, no @stdlib corpora, no browser bundles), about 46 MB.
# From the project root, after `npm run build`:
#   bash src/bench/pack-device.sh
# Then, for the call, move test/fixtures and teacher/tiny-bert-cased/model.{onnx,safetensors} out of the tree
# (about 57 MB; gpu-device.sh then writes a random tiny-shaped teacher) and put them back after it.
set -euo pipefail
../shared/gpu/pack-for-device.sh .device-pack dist > /dev/null # node.xz, gl/*.deb, unpack.sh (its tree is replaced below)
dev='eslint|@eslint|@eslint-community|typescript-eslint|@typescript-eslint|knip|dependency-cruiser|typescript|@oxc-parser|@oxc-project|@oxc-resolver|oxc-parser|oxc-resolver|@rolldown|rolldown|lightningcss|lightningcss-linux-x64-gnu|vite|vitest|@vitest|@stdlib|@types|core-js|jiti|wabt|@humanfs|@humanwhocodes|espree|postcss|yaml|smol-toml'
paths=(dist)
for d in node_modules/* node_modules/.bin; do b=${d#node_modules/}; [[ "$b" =~ ^($dev)$ ]] || paths+=("$d"); done
tar -cf - --exclude='*/darwin*' --exclude='*/win32*' --exclude='*linux-arm64*' --exclude='*/linux/arm64' \
  --exclude='*/linux_arm64' --exclude='*/musl*' --exclude='*.map' --exclude='*.min.js' --exclude='*.d.ts' \
  --exclude='node_modules/@tensorflow/tfjs-node-gpu' --exclude='node_modules/@tensorflow/tfjs-node' \
  --exclude='*/dist/tf.js' --exclude='*/dist/tf.es2017.js' --exclude='*/dist/tf.fesm.js' --exclude='*/miniprogram' \
  --exclude='*/dist/tf-*.es2017.js' --exclude='*/dist/tf-*.fesm.js' --exclude='*.html' \
  --exclude='*/dist/tf-backend-webgl.js' --exclude='*/dist/tf-core.js' --exclude='*/dist/tf-backend-cpu.js' \
  --exclude='*/dist/tf-backend-webgpu.js' --exclude='*/dist/tf-backend-wasm.js' --exclude='*/dist/tf-layers.js' \
  --exclude='*/dist/tf-converter.js' --exclude='*/dist/tf-data.js' \
  "${paths[@]}" | xz -T0 -6 > .device-pack/tree.tar.xz
rm -f .device-pack/.unpacked
du -sh .device-pack
