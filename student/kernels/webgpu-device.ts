// tfjs's webgpu backend on Dawn (npm `webgpu`): finding the adapter, asking for the device (with shader-f16 where
// offered), and watching it for errors, which WebGPU reports as events rather than exceptions.

import * as tf from '@tensorflow/tfjs';
import { DistillError } from '../../src/core/errors.js';
import { F16_MARKER } from './matmul-webgpu.js';

export const NO_ADAPTER_HINT =
  'WebGPU needs a Vulkan driver and loader: on an NVIDIA machine the driver plus libvulkan1, libglvnd0 and ' +
  "libglx0 (point VK_DRIVER_FILES at the driver's nvidia_icd.json if the loader does not find it); without a GPU, " +
  ('Mesa >= 25 (Debian: apt-get install -t bookworm-backports ' +
    'mesa-vulkan-drivers libvulkan1) gives the software adapter llvmpipe');

type GpuLimitName =
  | 'maxComputeWorkgroupStorageSize'
  | 'maxComputeWorkgroupsPerDimension'
  | 'maxStorageBufferBindingSize'
  | 'maxBufferSize'
  | 'maxComputeWorkgroupSizeX'
  | 'maxComputeInvocationsPerWorkgroup';
interface GpuShaderModuleDescriptor {
  code: string;
  label?: string;
}
interface GpuDeviceHandle {
  features: { has(name: string): boolean };
  createShaderModule(descriptor: GpuShaderModuleDescriptor): unknown;
}
interface GpuAdapterLike {
  info?: { vendor?: string; architecture?: string; device?: string; description?: string };
  features: { has(name: string): boolean };
  limits: Record<GpuLimitName, number>;
  requestDevice(descriptor: {
    requiredFeatures: string[];
    requiredLimits: Partial<Record<GpuLimitName, number>>;
  }): Promise<GpuDeviceHandle>;
}
interface DawnModule {
  create(options: string[]): { requestAdapter(o?: { powerPreference?: string }): Promise<GpuAdapterLike | null> };
  globals: Record<string, unknown>;
}

let webgpuDevice: string | undefined;

/** The adapter in use (vendor, architecture, device, description, buffer limits), once loaded. */
export function webgpuAdapter(): string | undefined {
  return webgpuDevice;
}
let gpuError: string | undefined;

interface GpuDeviceLike {
  addEventListener?(type: 'uncapturederror', listener: (ev: { error?: { message?: string } }) => void): void;
  lost?: Promise<{ message?: string }>;
}

/**
 * WebGPU reports a failed pipeline or submission as an event, not an exception, and tfjs then waits for
 * results that never come. Listen for them, and for the device being lost, so that the next check fails.
 */
let failGpu: ((e: Error) => void) | undefined;
const gpuFailure = new Promise<never>((_, reject) => {
  failGpu = reject;
});
gpuFailure.catch(() => undefined); // observed through guardGpu / throwIfGpuError

function gpuErrorOf(message: string): DistillError {
  return new DistillError(
    `WebGPU error: ${message.split('\n')[0]}`,
    'results after it are not valid; run with --backend wasm, ' +
      'or report the message above with the adapter printed at start',
  );
}

export function watchGpuErrors(): void {
  const device = (tf.backend() as unknown as { device?: GpuDeviceLike }).device;
  const record = (message: string): void => {
    if (gpuError) return;
    gpuError = message;
    failGpu!(gpuErrorOf(message));
  };
  device?.addEventListener?.('uncapturederror', (ev) => record(ev.error?.message ?? 'unknown WebGPU error'));
  void device?.lost?.then((info) => record(`the WebGPU device was lost: ${info.message ?? ''}`));
}

/** The GPUDevice of tfjs's webgpu backend when it is the active backend (for counting its traffic), else undefined. */
export function activeGpuDevice(): object | undefined {
  return tf.getBackend() === 'webgpu' ? (tf.backend() as unknown as { device?: object }).device : undefined;
}

/** Throw if the GPU reported an error since start (call after each step of work on webgpu). */
export function throwIfGpuError(): void {
  if (gpuError) throw gpuErrorOf(gpuError);
}

/** `p`, or the GPU's error if one comes first (a failed GPU submission leaves reads waiting for ever). */
export function guardGpu<T>(p: Promise<T>): Promise<T> {
  return tf.getBackend() === 'webgpu' ? Promise.race([p, gpuFailure]) : p;
}

/**
 * The error for an adapter filter that matched nothing. Dawn rejects requestAdapter with "no suitable backends
 * found" followed by "Available adapters:" and one " * backend: 'vulkan', name: '...'" line per adapter.
 */
export function noMatchingAdapterError(filter: string, dawnMessage: string, optionName = 'gpu_adapters'): DistillError {
  const names = [...dawnMessage.matchAll(/name: '([^']*)'/g)].map((m) => m[1]!);
  return new DistillError(
    `WebGPU: no adapter's name contains "${filter}" (${optionName}); adapters found: ` +
      `${names.length ? names.map((n) => `"${n}"`).join(', ') : 'none'}`,
    names.length
      ? `set ${optionName} to a part of one of these names (identical GPUs share a name: see README, "Several GPUs")`
      : NO_ADAPTER_HINT,
  );
}

let webgpuAdapterFilter: string | undefined;

/**
 * tfjs's webgpu backend, on a device we ask for ourselves: tfjs's own factory asks for no `shader-f16`, which the
 * f16 products need (matmul-webgpu.ts). Otherwise as tfjs does it: the adapter's limits, `timestamp-query` where
 * offered. WGSL wants `enable f16;` before every declaration, and tfjs writes a program's preamble itself: the
 * device puts the directive in front of the modules whose code carries F16_MARKER.
 */
function registerWebgpuBackend(
  adapter: GpuAdapterLike,
  WebGPUBackend: new (device: unknown, info: unknown) => tf.KernelBackend,
): void {
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend(
    'webgpu',
    async () => {
      const requiredFeatures = ['timestamp-query', 'shader-f16'].filter((f) => adapter.features.has(f));
      const names: GpuLimitName[] = [
        'maxComputeWorkgroupStorageSize',
        'maxComputeWorkgroupsPerDimension',
        'maxStorageBufferBindingSize',
        'maxBufferSize',
        'maxComputeWorkgroupSizeX',
        'maxComputeInvocationsPerWorkgroup',
      ];
      const device = await adapter.requestDevice({
        requiredFeatures,
        requiredLimits: Object.fromEntries(names.map((n) => [n, adapter.limits[n]])),
      });
      const create = device.createShaderModule.bind(device);
      device.createShaderModule = (d) =>
        create(d.code.includes(F16_MARKER) ? { ...d, code: `enable f16;\n${d.code}` } : d);
      return new WebGPUBackend(device, adapter.info);
    },
    3,
  );
}

/** Whether the webgpu device has `shader-f16` (f16 arithmetic in WGSL), for precision "fp16-mixed". */
export function gpuHasF16(): boolean {
  const device = (tf.backend() as unknown as { device?: GpuDeviceHandle }).device;
  return device?.features.has('shader-f16') ?? false;
}

/**
 * Install Dawn's navigator.gpu, find an adapter (the first whose name contains `adapterFilter`, Dawn's
 * `adapter=` option, when given), and load tfjs's webgpu backend; undefined when not installed. Once per process.
 */
export async function loadWebgpuBackend(adapterFilter?: string, optionName?: string): Promise<string | undefined> {
  if (webgpuDevice) {
    if (adapterFilter !== webgpuAdapterFilter)
      throw new DistillError(
        `WebGPU: this process already uses the adapter ${webgpuDevice}; it cannot switch to ` +
          `"${adapterFilter ?? 'the default'}"`,
      );
    return '@tensorflow/tfjs-backend-webgpu on Dawn (npm webgpu)';
  }
  let dawn: DawnModule;
  try {
    dawn = (await import('webgpu' as string)) as DawnModule; // an optional dependency: typed here, not by its package
  } catch {
    return undefined;
  }
  Object.assign(globalThis, dawn.globals);
  const gpu = dawn.create(adapterFilter ? [`adapter=${adapterFilter}`] : []);
  // Node 21+ has a read-only global navigator: define it rather than assign.
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  let adapter: GpuAdapterLike | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    if (adapterFilter && /Available adapters/.test((e as Error).message))
      throw noMatchingAdapterError(adapterFilter, (e as Error).message, optionName);
    throw e;
  }
  if (!adapter) throw new DistillError('WebGPU: Dawn found no adapter', NO_ADAPTER_HINT);
  webgpuAdapterFilter = adapterFilter;
  let backendModule: { WebGPUBackend: new (device: unknown, info: unknown) => tf.KernelBackend };
  try {
    backendModule = (await import('@tensorflow/tfjs-backend-webgpu')) as unknown as typeof backendModule;
  } catch {
    return undefined;
  }
  registerWebgpuBackend(adapter, backendModule.WebGPUBackend);
  const i = adapter.info ?? {};
  const gib = (n: number): string => `${(n / 2 ** 30).toFixed(1)} GiB`;
  webgpuDevice =
    `${[i.vendor, i.architecture, i.device, i.description].filter((x) => x).join(' / ') || 'unnamed adapter'}` +
    (` (max buffer ${gib(adapter.limits.maxBufferSize)}, max storage binding ` +
      `${gib(adapter.limits.maxStorageBufferBindingSize)})`);
  return '@tensorflow/tfjs-backend-webgpu on Dawn (npm webgpu)';
}
