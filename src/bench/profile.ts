// `distill bench --profile`: where the student step's time goes, by tfjs kernel. Every kernel of the
// active backend is wrapped with a timer (kernels run synchronously on wasm and cpu, so the wall time of
// the call is the kernel's time); what is not inside a kernel (the host loss pass, tfjs's bookkeeping,
// data uploads) is reported as the rest of the step.

import * as tf from '@tensorflow/tfjs';

export interface KernelTime {
  kernel: string;
  calls: number;
  ms: number;
}

export class KernelProfiler {
  private readonly totals = new Map<string, KernelTime>();
  private readonly restored: tf.KernelConfig[] = [];

  /** Wrap every kernel registered for `backendName`. */
  constructor(backendName: string) {
    for (const config of tf.getKernelsForBackend(backendName)) {
      const inner = config.kernelFunc;
      const entry: KernelTime = this.totals.get(config.kernelName) ?? { kernel: config.kernelName, calls: 0, ms: 0 };
      this.totals.set(config.kernelName, entry);
      const timed = ((args: Parameters<tf.KernelFunc>[0]) => {
        const t0 = performance.now();
        try {
          return inner(args);
        } finally {
          entry.ms += performance.now() - t0;
          entry.calls++;
        }
      }) as tf.KernelFunc;
      this.restored.push(config);
      tf.unregisterKernel(config.kernelName, backendName);
      tf.registerKernel({ ...config, kernelFunc: timed });
    }
  }

  reset(): void {
    for (const t of this.totals.values()) {
      t.calls = 0;
      t.ms = 0;
    }
  }

  /** Kernels by time spent, largest first. */
  report(): KernelTime[] {
    return [...this.totals.values()].filter((t) => t.calls > 0).sort((a, b) => b.ms - a.ms);
  }

  /** Put the original kernels back. */
  dispose(): void {
    for (const config of this.restored) {
      tf.unregisterKernel(config.kernelName, config.backendName);
      tf.registerKernel(config);
    }
    this.restored.length = 0;
  }
}
