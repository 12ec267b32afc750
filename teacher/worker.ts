// The teacher in a worker thread: runs the ONNX forward and prepares the soft targets of the KL rows, so
// the main thread (the student) never waits for either while the next batch is in flight. Messages:
//   in:  { kind: 'forward', id, inputIds, attentionMask, batchSize, seqLen, softRows, keepLogits, fullLogits }
// The temperature of the soft targets (and their top-k, if any) is the worker's, fixed when it starts (built
// into the teacher's graph).
//   out: { kind: 'result', id, lastHidden, soft, logits?, intermediate, busyMs } | { kind: 'error', id, message, hint }
// Large arrays travel as transferred buffers (no copy).

import { parentPort, workerData } from 'node:worker_threads';
import { Teacher, type TeacherOptions } from './teacher.js';
import { selectSoftRows, selectTopkRows } from '../src/core/soft-targets.js';
import { DistillError } from '../src/core/errors.js';

export interface ForwardRequest {
  kind: 'forward';
  id: number;
  inputIds: Int32Array;
  attentionMask: Int32Array;
  batchSize: number;
  seqLen: number;
  /** Rows (b·T + t) whose soft targets the KL needs. */
  softRows: Int32Array;
  /** Keep the raw logits of softRows (the MSE loss needs them). */
  keepLogits: boolean;
  /** Send the full [B, T, V] logits back too. */
  fullLogits: boolean;
}

interface WorkerInit {
  dir: string;
  /** softTargetTemperature is set: the soft targets are computed inside the teacher's graph at it. */
  options: TeacherOptions & { softTargetTemperature: number };
  needLogits: boolean;
}

async function main(): Promise<void> {
  const init = workerData as WorkerInit;
  const port = parentPort!;
  let teacher: Teacher;
  try {
    // Logits are fetched only when a request may need them (MSE, the unfused losses); see init.needLogits.
    teacher = await Teacher.load(init.dir, { ...init.options, fetchLogits: init.needLogits });
  } catch (e) {
    port.postMessage({
      kind: 'error',
      id: -1,
      message: (e as Error).message,
      hint: e instanceof DistillError ? e.hint : undefined,
    });
    return;
  }
  port.postMessage({
    kind: 'ready',
    vocabSize: teacher.config.vocabSize,
    hiddenSize: teacher.config.hiddenSize,
    nodesByProvider: teacher.nodesByProvider,
  });
  port.on('message', (msg: ForwardRequest | { kind: 'close' }) => {
    if (msg.kind === 'close') {
      void teacher.release().then(() => port.close());
      return;
    }
    const started = performance.now();
    teacher
      .forward(
        { inputIds: msg.inputIds, attentionMask: msg.attentionMask, batchSize: msg.batchSize, seqLen: msg.seqLen },
        { logits: msg.fullLogits },
      )
      .then((out) => {
        const V = teacher.config.vocabSize;
        // The graph computed p = softmax(t/τ) and Σ p log p (softTargetNodes); keep the requested rows.
        if (!out.soft)
          throw new DistillError('the teacher graph gave no soft targets (softTargetNodes were not added)');
        const tau = init.options.softTargetTemperature;
        const soft = out.soft.topkIds
          ? selectTopkRows(out.soft.probs, out.soft.topkIds, msg.softRows, init.options.softTargetTopK!, tau)
          : // in place: the outputs are this worker's alone (unless the full logits go back too)
            selectSoftRows(
              out.soft.probs,
              out.soft.negEntropy!,
              msg.softRows,
              V,
              tau,
              msg.keepLogits ? out.logits : undefined,
              !msg.fullLogits,
            );
        const lastHidden = out.hiddenStates[out.hiddenStates.length - 1]!;
        // What the intermediate-layer losses read (losses/layer-map.ts keys):
        // hidden states by index, attention, projections.
        const intermediate: Record<string, Float32Array> = { ...out.intermediate };
        teacher.hiddenStateIndices.forEach((h, i) => {
          intermediate[`hidden.${h}`] = out.hiddenStates[i]!;
        });
        const transfer: ArrayBuffer[] = [
          lastHidden.buffer as ArrayBuffer,
          soft.probs.buffer as ArrayBuffer,
          soft.negEntropy.buffer as ArrayBuffer,
          ...Object.values(intermediate).map((t) => t.buffer as ArrayBuffer),
        ];
        if (soft.topkIds) transfer.push(soft.topkIds.buffer as ArrayBuffer);
        if (soft.logits) transfer.push(soft.logits.buffer as ArrayBuffer);
        const logits = msg.fullLogits ? out.logits : undefined;
        if (logits) transfer.push(logits.buffer as ArrayBuffer);
        port.postMessage(
          { kind: 'result', id: msg.id, lastHidden, soft, logits, intermediate, busyMs: performance.now() - started },
          [...new Set(transfer)],
        );
      })
      .catch((e: unknown) => {
        port.postMessage({
          kind: 'error',
          id: msg.id,
          message: (e as Error).message,
          hint: e instanceof DistillError ? e.hint : undefined,
        });
      });
  });
}

void main();
