// The main thread's handle on the teacher worker (teacher/worker.ts): forward() posts a batch and resolves
// with the teacher's last hidden layer and the soft targets of the requested rows. The worker's own
// compute time is summed in busyMs, so the training loop can report how busy the teacher is.

import { Worker } from 'node:worker_threads';
import { DistillError } from '../src/core/errors.js';
import { compiledWorkerScript } from '../src/core/worker-script.js';
import type { TeacherSoftTargets } from '../src/core/soft-targets.js';
import type { TeacherOptions } from './teacher.js';
import type { ForwardRequest } from './worker.js';

export interface RemoteTeacherOutput {
  /** [B·T, H] */
  lastHidden: Float32Array;
  soft: TeacherSoftTargets;
  /** [B·T, V], when asked for. */
  logits?: Float32Array;
  /**
   * The hidden states ("hidden.N"), attention probabilities and projections the teacher was started with, by key
   * (losses/layer-map.ts).
   */
  intermediate: Record<string, Float32Array>;
}

type Pending = { resolve: (o: RemoteTeacherOutput) => void; reject: (e: Error) => void };

export class RemoteTeacher {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  /** On a GPU provider: the graph's nodes per provider in the first run (Teacher.nodesByProvider). */
  readonly nodesByProvider: Record<string, number> | undefined;
  busyMs = 0;
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;

  private constructor(
    worker: Worker,
    vocabSize: number,
    hiddenSize: number,
    nodesByProvider: Record<string, number> | undefined,
  ) {
    this.worker = worker;
    this.nodesByProvider = nodesByProvider;
    this.vocabSize = vocabSize;
    this.hiddenSize = hiddenSize;
    worker.on(
      'message',
      (msg: { kind: string; id: number; message?: string; hint?: string; busyMs?: number } & RemoteTeacherOutput) => {
        const p = this.pending.get(msg.id);
        if (!p) return;
        this.pending.delete(msg.id);
        if (msg.kind === 'error') p.reject(new DistillError(`teacher: ${msg.message}`, msg.hint));
        else {
          this.busyMs += msg.busyMs ?? 0;
          p.resolve({ lastHidden: msg.lastHidden, soft: msg.soft, logits: msg.logits, intermediate: msg.intermediate });
        }
      },
    );
    worker.on('error', (e) => {
      for (const p of this.pending.values()) p.reject(new DistillError(`teacher worker failed: ${e.message}`));
      this.pending.clear();
    });
  }

  /** Start the worker; `needLogits`: requests may ask for raw logits (MSE loss, unfused losses). */
  /** `softTargetTemperature`: the temperature of every soft target this teacher gives (built into its graph). */
  static start(
    dir: string,
    options: TeacherOptions & { softTargetTemperature: number },
    needLogits = false,
  ): Promise<RemoteTeacher> {
    const worker = new Worker(compiledWorkerScript(import.meta.url, 'teacher', 'worker.js'), {
      workerData: { dir, options, needLogits },
    });
    return new Promise((resolve, reject) => {
      const onMessage = (msg: {
        kind: string;
        message?: string;
        hint?: string;
        vocabSize?: number;
        hiddenSize?: number;
        nodesByProvider?: Record<string, number>;
      }): void => {
        worker.off('message', onMessage);
        if (msg.kind === 'ready')
          resolve(new RemoteTeacher(worker, msg.vocabSize!, msg.hiddenSize!, msg.nodesByProvider));
        else {
          void worker.terminate();
          reject(new DistillError(msg.message ?? 'the teacher worker did not start', msg.hint));
        }
      };
      worker.on('message', onMessage);
      worker.once('error', (e) => reject(new DistillError(`teacher worker failed to start: ${e.message}`)));
    });
  }

  forward(req: Omit<ForwardRequest, 'kind' | 'id'>): Promise<RemoteTeacherOutput> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // Copies of the inputs travel (they are small); the caller keeps its own.
      this.worker.postMessage({ kind: 'forward', id, ...req });
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
