// `distill bench --profile --backend webgpu`: what one update step asks of the GPU, counted at the WebGPU API
// under tfjs's webgpu backend (its GPUDevice's methods are wrapped for the count, then put back):
//   dispatches        compute dispatches (dispatchWorkgroups)
//   uploaded_bytes    host → GPU data: buffers created mapped (tfjs writes tensor values into them, directly or
//                     as a staging copy), plus queue.writeBuffer (tfjs's per-dispatch uniforms, counted apart too)
//   uniform_bytes     the queue.writeBuffer part of uploaded_bytes
//   read_back_bytes   GPU → host: buffers mapped for reading (tfjs's staging copies of tensors read with data())
//   host_syncs        times the host waited for the GPU: mapAsync for reading, onSubmittedWorkDone
//   pipelines_created compute pipelines compiled (after the warm-up steps this should be 0: tfjs caches them by
//                     shader key, and a new shape that changes the key recompiles)
//   submits           queue submissions

/** The parts of WebGPU's API counted (structural: Dawn's objects, typed loosely so no DOM types are needed). */
interface Counted {
  createBuffer(d: { size: number; usage: number; mappedAtCreation?: boolean }): BufferLike;
  createCommandEncoder(d?: unknown): EncoderLike;
  createComputePipeline(d: unknown): unknown;
  createComputePipelineAsync(d: unknown): Promise<unknown>;
  queue: QueueLike;
}
interface BufferLike {
  size: number;
  usage: number;
  mapAsync(mode: number, offset?: number, size?: number): Promise<void>;
  destroy(): void;
}
interface EncoderLike {
  beginComputePass(d?: unknown): PassLike;
}
interface PassLike {
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
}
interface QueueLike {
  writeBuffer(...args: unknown[]): void;
  submit(buffers: unknown[]): void;
  onSubmittedWorkDone(): Promise<void>;
}

export interface GpuTraffic {
  dispatches: number;
  uploaded_bytes: number;
  uniform_bytes: number;
  read_back_bytes: number;
  host_syncs: number;
  pipelines_created: number;
  submits: number;
}

const MAP_READ = 0x0001; // GPUBufferUsage.MAP_READ, GPUMapMode.READ
const emptyTraffic = (): GpuTraffic => ({
  dispatches: 0,
  uploaded_bytes: 0,
  uniform_bytes: 0,
  read_back_bytes: 0,
  host_syncs: 0,
  pipelines_created: 0,
  submits: 0,
});

/**
 * Bytes a queue.writeBuffer call writes: (buffer, offset, data,
 * dataOffset?, size?), offsets and size in elements of data.
 */
function writeBufferBytes(args: unknown[]): number {
  const data = args[2] as ArrayBufferView | ArrayBuffer;
  const element = ArrayBuffer.isView(data)
    ? ((data as unknown as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1)
    : 1;
  const total = data.byteLength / element;
  const dataOffset = typeof args[3] === 'number' ? args[3] : 0;
  const size = typeof args[4] === 'number' ? args[4] : total - dataOffset;
  return size * element;
}

export class GpuTrafficCounter {
  private counts = emptyTraffic();
  private readonly restore: (() => void)[] = [];

  /** Count what `device` is asked from now on (the backend's GPUDevice: `(tf.backend() as WebGPUBackend).device`). */
  constructor(device: unknown) {
    const d = device as Counted;
    const c = (): GpuTraffic => this.counts;
    // Own properties that shadow the methods (on the prototype) while counting; dispose deletes them again.
    const wrap = <T extends object, K extends keyof T>(target: T, key: K, make: (original: T[K]) => T[K]): void => {
      const own = Object.prototype.hasOwnProperty.call(target, key);
      const original = target[key];
      target[key] = make((original as (...a: unknown[]) => unknown).bind(target) as T[K]);
      this.restore.push(() => {
        if (own) target[key] = original;
        else delete target[key];
      });
    };
    wrap(d, 'createBuffer', (original) => (descriptor) => {
      if (descriptor.mappedAtCreation) c().uploaded_bytes += descriptor.size;
      return original(descriptor);
    });
    // Reads: on the buffers' prototype, since tfjs reuses staging buffers created before counting began.
    const probe = d.createBuffer({ size: 4, usage: MAP_READ | 0x0008 /* COPY_DST */ });
    const bufferProto = Object.getPrototypeOf(probe) as BufferLike;
    probe.destroy();
    // Called with each buffer as `this` (a prototype method, not bound to one buffer).
    const mapAsync = Reflect.get(bufferProto, 'mapAsync') as (
      this: BufferLike,
      mode: number,
      offset?: number,
      size?: number,
    ) => Promise<void>;
    bufferProto.mapAsync = function (this: BufferLike, mode: number, offset?: number, size?: number): Promise<void> {
      if (mode & MAP_READ) {
        c().read_back_bytes += size ?? this.size - (offset ?? 0);
        c().host_syncs++;
      }
      return mapAsync.call(this, mode, offset, size);
    };
    this.restore.push(() => {
      bufferProto.mapAsync = mapAsync;
    });
    wrap(d, 'createCommandEncoder', (original) => (descriptor) => {
      const encoder = original(descriptor);
      const begin = encoder.beginComputePass.bind(encoder);
      encoder.beginComputePass = (pd) => {
        const pass = begin(pd);
        const dispatch = pass.dispatchWorkgroups.bind(pass);
        pass.dispatchWorkgroups = (x, y, z) => {
          c().dispatches++;
          dispatch(x, y, z);
        };
        return pass;
      };
      return encoder;
    });
    wrap(d, 'createComputePipeline', (original) => (descriptor) => {
      c().pipelines_created++;
      return original(descriptor);
    });
    wrap(d, 'createComputePipelineAsync', (original) => (descriptor) => {
      c().pipelines_created++;
      return original(descriptor);
    });
    wrap(d.queue, 'writeBuffer', (original) => (...args: unknown[]) => {
      const bytes = writeBufferBytes(args);
      c().uploaded_bytes += bytes;
      c().uniform_bytes += bytes;
      original(...args);
    });
    wrap(d.queue, 'submit', (original) => (buffers) => {
      c().submits++;
      original(buffers);
    });
    wrap(d.queue, 'onSubmittedWorkDone', (original) => () => {
      c().host_syncs++;
      return original();
    });
  }

  reset(): void {
    this.counts = emptyTraffic();
  }

  report(): GpuTraffic {
    return { ...this.counts };
  }

  /** Put the device's methods back (encoders created meanwhile keep counting into a dead object). */
  dispose(): void {
    for (const r of this.restore.reverse()) r();
    this.restore.length = 0;
  }
}
