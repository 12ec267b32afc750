// The distillation step timed on fixed shapes, as the PyTorch peer (src/bench/torch_distill_step.py bench) times it:
// random token ids (5..V), every position real, 15% of positions labelled; teacher forward, student
// forward + backward on the three losses (no dropout, as the peer), clipping at 5, AdamW. Median over the
// timed steps, after one warm-up step. Three figures:
//   teacher_fwd_tokens_per_s  the teacher alone (its worker thread: forward + soft targets)
//   student_step_tokens_per_s the student's forward, backward and update alone
//   distill_tokens_per_s      whole steps as training runs them: the teacher works on the next batch
//                             (onnxruntime's own thread) while the student trains on this one

import type { TeacherExecutionProvider } from '../../teacher/teacher.js';
import { RemoteTeacher, type RemoteTeacherOutput } from '../../teacher/remote.js';
import { WordPieceTokenizer } from '../../corpus/tokenizer.js';
import { assertModelDir, readEncoderConfig } from '../core/model-dir.js';
import { activeGpuDevice, selectBackend, wasmMemory } from '../../student/backend.js';
import type { BackendName, GpuProducts, Precision } from '../../student/backend-names.js';
import { defaultTeacherEp } from '../../teacher/teacher.js';
import { defaultStudentLayers, evenlySpacedLayers, initStudentFromTeacher } from '../../student/init.js';
import { lossRows } from '../../losses/rows.js';
import { RECIPE_LOSS_WEIGHTS } from '../../losses/total.js';
import { UpdateStep, distillObjective } from '../train/step.js';
import { AdamW } from '../train/adamw.js';
import { LossScale } from '../train/loss-scale.js';
import { Rng } from '../../corpus/rng.js';
import { DEFAULT_CONFIG } from '../config.js';
import { KernelProfiler, type KernelTime } from './profile.js';
import { GpuTrafficCounter, type GpuTraffic } from './gpu-traffic.js';

export interface BenchOptions {
  teacher: string;
  batch: number;
  seq: number;
  steps: number;
  studentLayers?: number;
  backend?: BackendName;
  threads: number;
  teacherEp?: TeacherExecutionProvider;
  /** Also time one student step kernel by kernel (after the timed steps). */
  profile?: boolean;
  /** The fused host pass for the logit losses (default) or plain tfjs ops. */
  fused?: boolean;
  /** Dropout as in training (default off: the PyTorch peer's step has none). */
  dropout?: boolean;
  /** Top-k soft targets (soft_targets_topk; 0 or absent: the whole vocabulary). */
  topk?: number;
  /** On webgpu: a part of the adapter's name (gpu_adapters). */
  gpuAdapter?: string;
  /** The student's products (config key precision); fp16-mixed scales the loss by the default loss_scale. */
  precision?: Precision;
  /** On webgpu with fp32: who computes the products (config key webgpu_products). */
  gpuProducts?: GpuProducts;
}

export interface BenchResult {
  distill_tokens_per_s: number;
  teacher_fwd_tokens_per_s: number;
  student_step_tokens_per_s: number;
  backend: string;
  /** What ran the matrix products (the backend, or a native BLAS). */
  matmul: string;
  /** The GPU adapter (webgpu). */
  device?: string;
  /** The teacher's onnxruntime execution provider. */
  teacher_ep: string;
  /** On a GPU provider: how many of the teacher graph's nodes each provider ran (onnxruntime's own record). */
  teacher_nodes?: Record<string, number>;
  batch: number;
  seq: number;
  steps: number;
  student_layers: number[];
  /** The student's dropout was on (--dropout). */
  dropout?: boolean;
  /** On wasm: the size its memory grew to over the run (MiB; it never shrinks, so the step's peak; at most 4096). */
  wasm_heap_mib?: number;
  /** soft_targets_topk (0: the whole vocabulary). */
  topk: number;
  /** Bytes the teacher's graph hands out per batch: its soft targets (+ ids or entropies) and last hidden state. */
  teacher_out_bytes_per_batch: number;
  /**
   * With `profile`: one student step's time by kernel, and the time outside kernels (host time: on webgpu a
   * kernel call only records work, so its time is encoding plus any wait for the GPU); on webgpu also what one
   * whole update (upload of the teacher's outputs, forward, backward, AdamW, the loss read) asks of the GPU.
   */
  profile?: { step_ms: number; outside_kernels_ms: number; kernels: KernelTime[]; gpu_traffic_per_update?: GpuTraffic };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export async function benchDistillStep(o: BenchOptions): Promise<BenchResult> {
  const backend = await selectBackend(o.backend, {
    gpuAdapter: o.gpuAdapter,
    gpuAdapterOption: '--gpu-adapter',
    precision: o.precision ?? 'fp32',
    gpuProducts: o.gpuProducts ?? 'tfjs',
  });
  assertModelDir(o.teacher, '--teacher');
  const teacherConfig = readEncoderConfig(o.teacher);
  const L = teacherConfig.numLayers;
  const teacherEp = o.teacherEp ?? defaultTeacherEp(backend.device !== undefined);
  const teacher = await RemoteTeacher.start(
    o.teacher,
    {
      hiddenStates: 'last',
      threads: o.threads,
      executionProvider: teacherEp,
      softTargetTemperature: 2,
      softTargetTopK: o.topk ?? 0,
    },
    !(o.fused ?? true),
  );
  const layers = o.studentLayers ? evenlySpacedLayers(L, o.studentLayers) : defaultStudentLayers(L);
  const student = initStudentFromTeacher(o.teacher, teacherConfig, layers, WordPieceTokenizer.fromDir(o.teacher).padId);
  const optimizer = new AdamW(
    student.variables(),
    student.specs.map((s) => !s.noDecay),
    { betas: [0.9, 0.98], eps: 1e-6, weightDecay: 0 },
  );
  const V = teacherConfig.vocabSize;
  const { batch: B, seq: T } = o;
  const rng = new Rng(1);
  const ids = Int32Array.from({ length: B * T }, () => 5 + rng.int(V - 5));
  const mask = new Int32Array(B * T).fill(1);
  const labels = Int32Array.from(ids, (id) => (rng.next() < 0.15 ? id : -100));
  const rows = lossRows(mask, labels, B, T, V);
  const request = {
    inputIds: ids,
    attentionMask: mask,
    batchSize: B,
    seqLen: T,
    softRows: rows.realRows,
    keepLogits: false,
    fullLogits: false,
  };

  // The training loop's update step: forward + backward, clipping (one asynchronous read of the norm), AdamW.
  const update = new UpdateStep(student.variables(), optimizer, {
    gradAccum: 1,
    maxGradNorm: 5,
    ...(o.precision === 'fp16-mixed' ? { lossScale: new LossScale(DEFAULT_CONFIG.loss_scale, 0) } : {}),
  });
  const studentStep = async (t: RemoteTeacherOutput): Promise<void> => {
    const teacherTargets = {
      logits: t.logits && t.logits.length > 0 ? t.logits : undefined,
      lastHidden: t.lastHidden,
      soft: t.soft,
    };
    await update.accumulate(
      distillObjective(
        student,
        { inputIds: ids, attentionMask: mask, batchSize: B, seqLen: T, rows, teacher: teacherTargets },
        RECIPE_LOSS_WEIGHTS,
        { training: o.dropout ?? false, dropoutSeed: 1 },
        o.fused,
      ),
    );
    await update.apply(5e-4);
  };

  const teacherTimes: number[] = [];
  const studentTimes: number[] = [];
  for (let i = 0; i <= o.steps; i++) {
    const t0 = performance.now();
    const out = await teacher.forward(request);
    const t1 = performance.now();
    await studentStep(out);
    const t2 = performance.now();
    if (i > 0) {
      teacherTimes.push(t1 - t0);
      studentTimes.push(t2 - t1);
    }
  }
  // Pipelined: the next teacher forward runs while the student trains.
  const wholeTimes: number[] = [];
  let pending = teacher.forward(request);
  for (let i = 0; i <= o.steps; i++) {
    const t0 = performance.now();
    const t = await pending;
    pending = teacher.forward(request);
    await studentStep(t);
    if (i > 0) wholeTimes.push(performance.now() - t0);
  }
  const last = await pending;
  let profile: BenchResult['profile'];
  if (o.profile) {
    const device = activeGpuDevice();
    let traffic: GpuTraffic | undefined;
    if (device) {
      // After the warm-up and the timed steps: pipelines created now are ones the warm-up did not make.
      const counter = new GpuTrafficCounter(device);
      await studentStep(last);
      traffic = counter.report();
      counter.dispose();
    }
    const profiler = new KernelProfiler(backend.name);
    const t0 = performance.now();
    await studentStep(last);
    const stepMs = performance.now() - t0;
    const kernels = profiler.report();
    profiler.dispose();
    const inKernels = kernels.reduce((a, k) => a + k.ms, 0);
    profile = {
      step_ms: stepMs,
      outside_kernels_ms: stepMs - inKernels,
      kernels: kernels.map((k) => ({ ...k, ms: Math.round(k.ms * 10) / 10 })),
      ...(traffic ? { gpu_traffic_per_update: traffic } : {}),
    };
  }
  const memory = wasmMemory();
  const heapMib = memory ? Math.round(memory.bytes / 2 ** 20) : undefined;
  await teacher.close();
  optimizer.dispose();
  student.dispose();
  const tokens = B * T;
  const k = o.topk ?? 0;
  // float32 values, int64 ids (top-k) or one float32 Σ p log p per token (full), float32 hidden states.
  const teacherOutBytes = tokens * ((k > 0 ? k * (4 + 8) : V * 4 + 4) + teacherConfig.hiddenSize * 4);
  return {
    distill_tokens_per_s: tokens / (median(wholeTimes) / 1000),
    teacher_fwd_tokens_per_s: tokens / (median(teacherTimes) / 1000),
    student_step_tokens_per_s: tokens / (median(studentTimes) / 1000),
    backend: backend.name,
    matmul: backend.matmul,
    ...(backend.device ? { device: backend.device } : {}),
    teacher_ep: teacherEp,
    ...(teacher.nodesByProvider ? { teacher_nodes: teacher.nodesByProvider } : {}),
    batch: B,
    seq: T,
    steps: o.steps,
    student_layers: layers,
    topk: k,
    teacher_out_bytes_per_batch: teacherOutBytes,
    ...(o.dropout ? { dropout: true } : {}),
    ...(heapMib !== undefined ? { wasm_heap_mib: heapMib } : {}),
    ...(profile ? { profile } : {}),
  };
}
