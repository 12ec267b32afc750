// The teacher's soft targets in its graph: softmax(t/τ) and Σ p log p computed inside the teacher's ONNX graph
// (softTargetNodes, appended to any export); on the host from its logits: src/core/soft-targets.ts.
// Top-k soft targets (`soft_targets_topk: k`): the graph ends in TopK, so only the k largest probabilities of
// each row and their token ids leave it ([B, T, k] each instead of [B, T, V]); the rest of the vocabulary, the
// tail, is one bucket of mass 1 − Σ_k p (see losses/distillation-topk.ts for the KL on that support). The host side
// (the rows kept, TeacherSoftTargets) is in src/core/soft-targets.ts; the losses (losses/total.ts) read
// them; the teacher's worker (teacher/worker.ts) makes them.

import { onnx, type GraphAddition } from '../src/core/onnx.js';

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
  /**
   * Take the top k in two stages over groups of this many values (topkNodes);
   * default WEBGPU_TOPK_GROUP with `webgpu`, else one stage.
   */
  topkGroup?: number;
}

/**
 * Nodes computing the distillation's soft targets inside the teacher graph, so that onnxruntime does the
 * exponentials (vectorised, off the JS thread): p = softmax(logits/τ) [B, T, V] and Σ_v p log p [B, T, 1]
 * (a product with a ones vector: no opset-dependent reduction); with `topk`, the k largest p and their ids
 * (topkNodes). Softmax and LogSoftmax over the last axis mean the same in every opset.
 */
export function softTargetNodes(
  logits: string,
  vocabSize: number,
  temperature: number,
  options: SoftTargetGraphOptions = {},
): GraphAddition {
  const { topk = 0, opset = 17, webgpu = false, topkGroup = webgpu ? WEBGPU_TOPK_GROUP : Infinity } = options;
  const F = onnx.TensorProto.DataType.FLOAT;
  const INT64 = onnx.TensorProto.DataType.INT64;
  const temperatureInit = {
    name: 'distill_temperature',
    dataType: F,
    dims: [],
    rawData: new Uint8Array(Float32Array.from([temperature]).buffer),
  };
  const scale = {
    opType: 'Div',
    input: [logits, 'distill_temperature'],
    output: ['distill_scaled_logits'],
    name: 'distill_scale',
  };
  const softmax = (output: string): GraphNodeProto => ({
    opType: 'Softmax',
    input: ['distill_scaled_logits'],
    output: [output],
    name: 'distill_softmax',
    attribute: [intAttr('axis', -1)],
  });
  if (topk > 0) {
    // p = softmax(logits/τ), then its k largest values and their ids, largest first (topkNodes).
    const top = topkNodes('distill_soft_full', vocabSize, topk, opset, topkGroup);
    return {
      initializers: [temperatureInit, ...top.initializers],
      nodes: [scale, softmax('distill_soft_full'), ...top.nodes],
      outputs: [
        { name: SOFT_TARGETS_OUTPUT, elemType: F },
        { name: SOFT_TOPK_IDS_OUTPUT, elemType: INT64 },
      ],
    };
  }
  const logOfSoft: GraphNodeProto[] = webgpu
    ? [
        // log p from p, floored at the smallest normal float32 so that p = 0 (an exp that underflowed) gives
        // 0·(−87.3) = 0, not 0·(−∞); a p below the floor adds under 1e-36 to the sum.
        {
          opType: 'Max',
          input: [SOFT_TARGETS_OUTPUT, 'distill_smallest_normal'],
          output: ['distill_soft_floored'],
          name: 'distill_soft_floor',
        },
        { opType: 'Log', input: ['distill_soft_floored'], output: ['distill_log_soft'], name: 'distill_log_soft' },
      ]
    : [
        {
          opType: 'LogSoftmax',
          input: ['distill_scaled_logits'],
          output: ['distill_log_soft'],
          name: 'distill_log_softmax',
          attribute: [intAttr('axis', -1)],
        },
      ];
  return {
    initializers: [
      temperatureInit,
      {
        name: 'distill_ones_v',
        dataType: F,
        dims: [vocabSize, 1],
        rawData: new Uint8Array(new Float32Array(vocabSize).fill(1).buffer),
      },
      ...(webgpu
        ? [
            {
              name: 'distill_smallest_normal',
              dataType: F,
              dims: [],
              rawData: new Uint8Array(Float32Array.from([2 ** -126]).buffer),
            },
          ]
        : []),
    ],
    nodes: [
      scale,
      softmax(SOFT_TARGETS_OUTPUT),
      ...logOfSoft,
      {
        opType: 'Mul',
        input: [SOFT_TARGETS_OUTPUT, 'distill_log_soft'],
        output: ['distill_p_log_p'],
        name: 'distill_p_log_p',
      },
      {
        opType: 'MatMul',
        input: ['distill_p_log_p', 'distill_ones_v'],
        output: [SOFT_NEG_ENTROPY_OUTPUT],
        name: 'distill_neg_entropy',
      },
    ],
    outputs: [
      { name: SOFT_TARGETS_OUTPUT, elemType: F },
      { name: SOFT_NEG_ENTROPY_OUTPUT, elemType: F },
    ],
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
const int64s = (name: string, dims: number[], values: number[]): TensorProto => ({
  name,
  dataType: onnx.TensorProto.DataType.INT64,
  dims,
  rawData: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer),
});

/**
 * Nodes taking the k largest values of `input` [B, T, V] along its last axis, largest first, into
 * SOFT_TARGETS_OUTPUT and their ids into SOFT_TOPK_IDS_OUTPUT (int64), ties to the lower id as ONNX's TopK.
 * When V > `group` (and k ≤ group, opset ≥ 11): in two stages, so that each TopK sorts rows of at most `group`
 * values: the row padded with −1 (below any probability) to G groups of `group`, the top k of each group
 * [..., G, k], then the top k of those G·k candidates, whose ids are gathered. Exact: each of the k largest is
 * among its group's k largest; ties keep the lower id (within a group TopK orders them so, across groups the
 * candidate of the lower group has the lower position and the lower id).
 */
function topkNodes(
  input: string,
  vocabSize: number,
  k: number,
  opset: number,
  group: number,
): Required<Pick<GraphAddition, 'nodes' | 'initializers'>> {
  const kAsInput = opset >= 10;
  const topk = (name: string, x: string, outputs: [string, string]): GraphNodeProto => ({
    opType: 'TopK',
    input: kAsInput ? [x, 'distill_topk_k'] : [x],
    output: outputs,
    name,
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
      {
        name: 'distill_topk_pad_value',
        dataType: F,
        dims: [],
        rawData: new Uint8Array(Float32Array.from([-1]).buffer),
      },
      int64s('distill_topk_groups_shape', [4], [0, 0, G, group]),
      int64s('distill_topk_candidates_shape', [3], [0, 0, G * k]),
      {
        name: 'distill_topk_local_table',
        dataType: F,
        dims: [group],
        rawData: new Uint8Array(Float32Array.from({ length: group }, (_, i) => i).buffer),
      },
      {
        name: 'distill_topk_group_start',
        dataType: F,
        dims: [G, 1],
        rawData: new Uint8Array(Float32Array.from({ length: G }, (_, g) => g * group).buffer),
      },
    ],
    nodes: [
      {
        opType: 'Pad',
        input: [input, 'distill_topk_pads', 'distill_topk_pad_value'],
        output: ['distill_topk_padded'],
        name: 'distill_topk_pad',
        attribute: [
          { name: 'mode', type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode('constant') },
        ],
      },
      {
        opType: 'Reshape',
        input: ['distill_topk_padded', 'distill_topk_groups_shape'],
        output: ['distill_topk_groups'],
        name: 'distill_topk_groups',
      }, // [B, T, G, group]
      // [B, T, G, k]
      topk('distill_topk_stage1', 'distill_topk_groups', ['distill_topk_group_values', 'distill_topk_group_local_ids']),
      // ids within the group → vocabulary ids, as float32 (exact below 2^24): onnxruntime's WebGPU provider has no
      // Cast and no arithmetic from int64, but gathers with int64 indices, here from the table 0, 1, …, group − 1.
      {
        opType: 'Gather',
        input: ['distill_topk_local_table', 'distill_topk_group_local_ids'],
        output: ['distill_topk_group_local_f'],
        name: 'distill_topk_local_f',
        attribute: [intAttr('axis', 0)],
      },
      {
        opType: 'Add',
        input: ['distill_topk_group_local_f', 'distill_topk_group_start'],
        output: ['distill_topk_group_ids_f'],
        name: 'distill_topk_ids_f',
      },
      {
        opType: 'Reshape',
        input: ['distill_topk_group_values', 'distill_topk_candidates_shape'],
        output: ['distill_topk_candidates'],
        name: 'distill_topk_candidates',
      }, // [B, T, G·k]
      {
        opType: 'Reshape',
        input: ['distill_topk_group_ids_f', 'distill_topk_candidates_shape'],
        output: ['distill_topk_candidate_ids_f'],
        name: 'distill_topk_candidate_ids',
      },
      // [B, T, k]
      topk('distill_topk_stage2', 'distill_topk_candidates', [SOFT_TARGETS_OUTPUT, 'distill_topk_positions']),
      {
        opType: 'GatherElements',
        input: ['distill_topk_candidate_ids_f', 'distill_topk_positions'],
        output: ['distill_topk_ids_f'],
        name: 'distill_topk_gather',
        attribute: [intAttr('axis', -1)],
      },
      {
        opType: 'Cast',
        input: ['distill_topk_ids_f'],
        output: [SOFT_TOPK_IDS_OUTPUT],
        name: 'distill_topk_ids',
        attribute: [intAttr('to', onnx.TensorProto.DataType.INT64)],
      },
    ],
  };
}
