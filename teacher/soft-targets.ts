// The teacher's soft targets: softmax(t/τ) of the rows a logit loss reads and Σ p log p, computed inside the
// teacher's ONNX graph (softTargetNodes, appended to any export) or on the host from its logits
// (teacherSoftTargets), and the rows kept (selectSoftRows).
// Top-k soft targets (`soft_targets_topk: k`): the graph ends in TopK, so only the k largest probabilities of
// each row and their token ids leave it ([B, T, k] each instead of [B, T, V]); the rest of the vocabulary, the
// tail, is one bucket of mass 1 − Σ_k p (see losses/distillation-topk.ts for the KL on that support). The losses (losses/total.ts and its fused pass, student/kernels/logit-losses.ts) read
// them; the teacher's worker (teacher/worker.ts) makes them.

import { onnx, type GraphAddition } from '../src/core/onnx.js';
import { expNonPositive, selectRows } from '../src/core/math.js';

export const SOFT_TARGETS_OUTPUT = 'distill_soft_targets';
export const SOFT_NEG_ENTROPY_OUTPUT = 'distill_soft_neg_entropy';
export const SOFT_TOPK_IDS_OUTPUT = 'distill_soft_topk_ids';

/** How the soft-target nodes are written (softTargetNodes). */
export interface SoftTargetGraphOptions {
  /** The k largest soft targets and their ids instead of all V (soft_targets_topk); 0: all. */
  topk?: number;
  /** The teacher graph's ONNX opset (TopK takes k as an input from 10; Pad takes its pads as one from 11). */
  opset?: number;
  /**
   * Written for onnxruntime's WebGPU provider: log p as Log(max(p, 2⁻¹²⁶)), since it has no LogSoftmax (it would
   * run on the CPU, with [B, T, V] copied down and back every batch), and TopK in two stages (topkGroup).
   * Elsewhere LogSoftmax (on the CPU provider Max + Log made the tiny teacher's forward ~5% slower).
   */
  webgpu?: boolean;
  /** Take the top k in two stages over groups of this many values (topkNodes); default WEBGPU_TOPK_GROUP with `webgpu`, else one stage. */
  topkGroup?: number;
}

/**
 * Nodes computing the distillation's soft targets inside the teacher graph, so that onnxruntime does the
 * exponentials (vectorised, off the JS thread): p = softmax(logits/τ) [B, T, V] and Σ_v p log p [B, T, 1]
 * (a product with a ones vector: no opset-dependent reduction); with `topk`, the k largest p and their ids
 * (topkNodes). Softmax and LogSoftmax over the last axis mean the same in every opset.
 */
export function softTargetNodes(logits: string, vocabSize: number, temperature: number, options: SoftTargetGraphOptions = {}): GraphAddition {
  const { topk = 0, opset = 17, webgpu = false, topkGroup = webgpu ? WEBGPU_TOPK_GROUP : Infinity } = options;
  const F = onnx.TensorProto.DataType.FLOAT;
  const INT64 = onnx.TensorProto.DataType.INT64;
  const temperatureInit = { name: 'distill_temperature', dataType: F, dims: [], rawData: new Uint8Array(Float32Array.from([temperature]).buffer) };
  const scale = { opType: 'Div', input: [logits, 'distill_temperature'], output: ['distill_scaled_logits'], name: 'distill_scale' };
  const softmax = (output: string): GraphNodeProto =>
    ({ opType: 'Softmax', input: ['distill_scaled_logits'], output: [output], name: 'distill_softmax', attribute: [intAttr('axis', -1)] });
  if (topk > 0) {
    // p = softmax(logits/τ), then its k largest values and their ids, largest first (topkNodes).
    const top = topkNodes('distill_soft_full', vocabSize, topk, opset, topkGroup);
    return {
      initializers: [temperatureInit, ...top.initializers],
      nodes: [scale, softmax('distill_soft_full'), ...top.nodes],
      outputs: [{ name: SOFT_TARGETS_OUTPUT, elemType: F }, { name: SOFT_TOPK_IDS_OUTPUT, elemType: INT64 }],
    };
  }
  const logOfSoft: GraphNodeProto[] = webgpu
    ? [
      // log p from p, floored at the smallest normal float32 so that p = 0 (an exp that underflowed) gives
      // 0·(−87.3) = 0, not 0·(−∞); a p below the floor adds under 1e-36 to the sum.
      { opType: 'Max', input: [SOFT_TARGETS_OUTPUT, 'distill_smallest_normal'], output: ['distill_soft_floored'], name: 'distill_soft_floor' },
      { opType: 'Log', input: ['distill_soft_floored'], output: ['distill_log_soft'], name: 'distill_log_soft' },
    ]
    : [{ opType: 'LogSoftmax', input: ['distill_scaled_logits'], output: ['distill_log_soft'], name: 'distill_log_softmax', attribute: [intAttr('axis', -1)] }];
  return {
    initializers: [
      temperatureInit,
      { name: 'distill_ones_v', dataType: F, dims: [vocabSize, 1], rawData: new Uint8Array(new Float32Array(vocabSize).fill(1).buffer) },
      ...(webgpu ? [{ name: 'distill_smallest_normal', dataType: F, dims: [], rawData: new Uint8Array(Float32Array.from([2 ** -126]).buffer) }] : []),
    ],
    nodes: [
      scale,
      softmax(SOFT_TARGETS_OUTPUT),
      ...logOfSoft,
      { opType: 'Mul', input: [SOFT_TARGETS_OUTPUT, 'distill_log_soft'], output: ['distill_p_log_p'], name: 'distill_p_log_p' },
      { opType: 'MatMul', input: ['distill_p_log_p', 'distill_ones_v'], output: [SOFT_NEG_ENTROPY_OUTPUT], name: 'distill_neg_entropy' },
    ],
    outputs: [{ name: SOFT_TARGETS_OUTPUT, elemType: F }, { name: SOFT_NEG_ENTROPY_OUTPUT, elemType: F }],
  };
}

/**
 * The longest rows that onnxruntime's WebGPU provider's TopK sorts in one dispatch, in workgroup memory: it pads
 * a row to a power of two and, up to 2048, sorts it in one workgroup; above, it runs a bitonic sort over the whole
 * padded row in global memory, whatever k: for bert-base-cased's vocabulary (28,996 → 32,768) 120 dispatches, each
 * reading the whole [B·T, 32768] values and ids. In two stages of rows ≤ 2048 (topkNodes) the same top 32 of
 * [1024, 28996] took 9.8–12.3 s instead of 25.0–27.5 s on Mesa's software adapter (two runs). Not on the CPU
 * provider, whose TopK selects without sorting the row: there two stages took 365–457 ms instead of 88–109 ms
 * ([4096, 28996], 2 threads). Measured with the soft-target nodes alone on random logits, 2026-11-28.
 */
export const WEBGPU_TOPK_GROUP = 2048;

type GraphNodeProto = NonNullable<GraphAddition['nodes']>[number];
type TensorProto = NonNullable<GraphAddition['initializers']>[number];
type Attribute = NonNullable<GraphNodeProto['attribute']>[number];
const intAttr = (name: string, i: number): Attribute => ({ name, type: onnx.AttributeProto.AttributeType.INT, i });
const int64s = (name: string, dims: number[], values: number[]): TensorProto =>
  ({ name, dataType: onnx.TensorProto.DataType.INT64, dims, rawData: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer) });

/**
 * Nodes taking the k largest values of `input` [B, T, V] along its last axis, largest first, into
 * SOFT_TARGETS_OUTPUT and their ids into SOFT_TOPK_IDS_OUTPUT (int64), ties to the lower id as ONNX's TopK.
 * When V > `group` (and k ≤ group, opset ≥ 11): in two stages, so that each TopK sorts rows of at most `group`
 * values: the row padded with −1 (below any probability) to G groups of `group`, the top k of each group
 * [..., G, k], then the top k of those G·k candidates, whose ids are gathered. Exact: each of the k largest is
 * among its group's k largest; ties keep the lower id (within a group TopK orders them so, across groups the
 * candidate of the lower group has the lower position and the lower id).
 */
function topkNodes(input: string, vocabSize: number, k: number, opset: number, group: number): Required<Pick<GraphAddition, 'nodes' | 'initializers'>> {
  const kAsInput = opset >= 10;
  const topk = (name: string, x: string, outputs: [string, string]): GraphNodeProto => ({
    opType: 'TopK', input: kAsInput ? [x, 'distill_topk_k'] : [x], output: outputs, name,
    attribute: [intAttr('axis', -1), ...(kAsInput ? [] : [intAttr('k', k)])],
  });
  const kInit = kAsInput ? [int64s('distill_topk_k', [1], [k])] : [];
  if (vocabSize <= group || k > group || opset < 11) {
    return { initializers: kInit, nodes: [topk('distill_topk', input, [SOFT_TARGETS_OUTPUT, SOFT_TOPK_IDS_OUTPUT])] };
  }
  const G = Math.ceil(vocabSize / group);
  const F = onnx.TensorProto.DataType.FLOAT;
  return {
    initializers: [
      ...kInit,
      int64s('distill_topk_pads', [6], [0, 0, 0, 0, 0, G * group - vocabSize]), // [B, T, V] → [B, T, G·group]
      { name: 'distill_topk_pad_value', dataType: F, dims: [], rawData: new Uint8Array(Float32Array.from([-1]).buffer) },
      int64s('distill_topk_groups_shape', [4], [0, 0, G, group]),
      int64s('distill_topk_candidates_shape', [3], [0, 0, G * k]),
      { name: 'distill_topk_local_table', dataType: F, dims: [group], rawData: new Uint8Array(Float32Array.from({ length: group }, (_, i) => i).buffer) },
      { name: 'distill_topk_group_start', dataType: F, dims: [G, 1], rawData: new Uint8Array(Float32Array.from({ length: G }, (_, g) => g * group).buffer) },
    ],
    nodes: [
      { opType: 'Pad', input: [input, 'distill_topk_pads', 'distill_topk_pad_value'], output: ['distill_topk_padded'], name: 'distill_topk_pad', attribute: [{ name: 'mode', type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode('constant') }] },
      { opType: 'Reshape', input: ['distill_topk_padded', 'distill_topk_groups_shape'], output: ['distill_topk_groups'], name: 'distill_topk_groups' }, // [B, T, G, group]
      topk('distill_topk_stage1', 'distill_topk_groups', ['distill_topk_group_values', 'distill_topk_group_local_ids']), // [B, T, G, k]
      // ids within the group → vocabulary ids, as float32 (exact below 2^24): onnxruntime's WebGPU provider has no
      // Cast and no arithmetic from int64, but gathers with int64 indices, here from the table 0, 1, …, group − 1.
      { opType: 'Gather', input: ['distill_topk_local_table', 'distill_topk_group_local_ids'], output: ['distill_topk_group_local_f'], name: 'distill_topk_local_f', attribute: [intAttr('axis', 0)] },
      { opType: 'Add', input: ['distill_topk_group_local_f', 'distill_topk_group_start'], output: ['distill_topk_group_ids_f'], name: 'distill_topk_ids_f' },
      { opType: 'Reshape', input: ['distill_topk_group_values', 'distill_topk_candidates_shape'], output: ['distill_topk_candidates'], name: 'distill_topk_candidates' }, // [B, T, G·k]
      { opType: 'Reshape', input: ['distill_topk_group_ids_f', 'distill_topk_candidates_shape'], output: ['distill_topk_candidate_ids_f'], name: 'distill_topk_candidate_ids' },
      topk('distill_topk_stage2', 'distill_topk_candidates', [SOFT_TARGETS_OUTPUT, 'distill_topk_positions']), // [B, T, k]
      { opType: 'GatherElements', input: ['distill_topk_candidate_ids_f', 'distill_topk_positions'], output: ['distill_topk_ids_f'], name: 'distill_topk_gather', attribute: [intAttr('axis', -1)] },
      { opType: 'Cast', input: ['distill_topk_ids_f'], output: [SOFT_TOPK_IDS_OUTPUT], name: 'distill_topk_ids', attribute: [intAttr('to', onnx.TensorProto.DataType.INT64)] },
    ],
  };
}

/** What the logit losses need of the teacher, for the selected rows. */
export interface TeacherSoftTargets {
  temperature: number;
  /** softmax(t/τ), [N, V]; with `topkIds`, its k largest values per row, [N, k]. */
  probs: Float32Array;
  /** Σ_v p log p of each row; with `topkIds`, of the bucketed distribution (the k values and the tail's mass). */
  negEntropy: Float64Array;
  /** Top-k soft targets: the token ids of `probs`, [N, k]. */
  topkIds?: Int32Array;
  /** The raw logits of the rows, [N, V]: only kept when the MSE loss is on. */
  logits?: Float32Array;
}

/** Soft targets of the teacher rows `rows` of `logits` ([rows of width v]). */
export function teacherSoftTargets(logits: Float32Array, rows: Int32Array, v: number, temperature: number, keepLogits: boolean): TeacherSoftTargets {
  const n = rows.length;
  const probs = new Float32Array(n * v);
  const negEntropy = new Float64Array(n);
  const kept = keepLogits ? new Float32Array(n * v) : undefined;
  const invTau = 1 / temperature;
  for (let i = 0; i < n; i++) {
    const src = rows[i]! * v;
    const dst = i * v;
    let m = -Infinity;
    for (let j = 0; j < v; j++) if (logits[src + j]! > m) m = logits[src + j]!;
    let z = 0;
    let zt = 0; // Σ e·(t − m)/τ
    for (let j = 0; j < v; j++) {
      const a = (logits[src + j]! - m) * invTau;
      const e = expNonPositive(a);
      probs[dst + j] = e;
      z += e;
      zt += e * a;
    }
    const invZ = 1 / z;
    for (let j = 0; j < v; j++) probs[dst + j]! *= invZ;
    // Σ p log p = Σ p (a − log z) = zt/z − log z
    negEntropy[i] = zt * invZ - Math.log(z);
    if (kept) kept.set(logits.subarray(src, src + v), dst);
  }
  return { temperature, probs, negEntropy, logits: kept };
}

/**
 * The soft targets of rows `rows`, from p [rows of width v] and Σ p log p [one per row] computed in the teacher
 * graph. With `inPlace` (for arrays nothing else reads: the teacher's outputs in its worker) and `rows` strictly
 * ascending, as lossRows gives them, the rows move to the front of `probs` (and `logits`) themselves and the result
 * views them (see keepRows); else they are copied into new arrays.
 */
export function selectSoftRows(probs: Float32Array, negEntropy: Float32Array, rows: Int32Array, v: number, temperature: number,
  logits?: Float32Array, inPlace = false): TeacherSoftTargets {
  const ne = Float64Array.from(rows, (r) => negEntropy[r]!);
  return { temperature, probs: keepRows(probs, rows, v, inPlace), negEntropy: ne, logits: logits && keepRows(logits, rows, v, inPlace) };
}

/**
 * Rows `rows` of a row-major [·, width] array as a [rows.length, width] array. In place when allowed and `rows` is
 * strictly ascending (row i then moves down to i ≤ rows[i], so no row is overwritten before it is read): a view of
 * `data`'s front. Why: a new array of the full soft targets' size pays a page fault per 4 KB page on its first
 * write, which a reused buffer does not: rows of [4096, 6144] float32 took 443–488 ms into a new array and 3 ms in
 * place on the 2-core development machine (a virtual machine, where page faults are dear).
 */
function keepRows(data: Float32Array, rows: Int32Array, width: number, inPlace: boolean): Float32Array {
  const ascending = rows.every((r, i) => i === 0 || r > rows[i - 1]!);
  if (inPlace && ascending) {
    rows.forEach((r, i) => { if (r !== i) data.copyWithin(i * width, r * width, (r + 1) * width); });
    return data.subarray(0, rows.length * width);
  }
  return selectRows(data, rows, width);
}


/**
 * Σ q log q of a row's bucketed distribution: its k top probabilities and the tail's mass 1 − Σ_k p (clamped at
 * 0: the float32 values may sum to a hair above 1). Float64 throughout.
 */
export function bucketNegEntropy(top: Float32Array, from: number, k: number): number {
  let sum = 0;
  let plogp = 0;
  for (let j = 0; j < k; j++) {
    const p = top[from + j]!;
    sum += p;
    if (p > 0) plogp += p * Math.log(p);
  }
  const tail = 1 - sum;
  return tail > 0 ? plogp + tail * Math.log(tail) : plogp;
}

/**
 * The top-k soft targets of rows `rows`, from the graph's outputs: the k largest probabilities [rows of width k]
 * and their ids (int64 from onnxruntime, [rows of width k]).
 */
export function selectTopkRows(top: Float32Array, ids: BigInt64Array | Int32Array, rows: Int32Array, k: number, temperature: number): TeacherSoftTargets {
  const n = rows.length;
  const probs = new Float32Array(n * k);
  const topkIds = new Int32Array(n * k);
  const negEntropy = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const src = rows[i]! * k;
    probs.set(top.subarray(src, src + k), i * k);
    for (let j = 0; j < k; j++) topkIds[i * k + j] = Number(ids[src + j]!);
    negEntropy[i] = bucketNegEntropy(top, src, k);
  }
  return { temperature, probs, negEntropy, topkIds };
}

/** The top-k soft targets of full soft targets [N, V] (the host form of the graph's TopK; ties: the lower id first). */
export function topkOfSoftTargets(soft: TeacherSoftTargets, v: number, k: number): TeacherSoftTargets {
  const n = soft.negEntropy.length;
  const top = new Float32Array(n * k);
  const ids = new Int32Array(n * k);
  const order = new Int32Array(v);
  for (let i = 0; i < n; i++) {
    const row = soft.probs.subarray(i * v, (i + 1) * v);
    for (let j = 0; j < v; j++) order[j] = j;
    const sorted = order.slice().sort((a, b) => row[b]! - row[a]! || a - b);
    for (let j = 0; j < k; j++) {
      ids[i * k + j] = sorted[j]!;
      top[i * k + j] = row[sorted[j]!]!;
    }
  }
  const negEntropy = Float64Array.from({ length: n }, (_, i) => bucketNegEntropy(top, i * k, k));
  return { temperature: soft.temperature, probs: top, negEntropy, topkIds: ids };
}
