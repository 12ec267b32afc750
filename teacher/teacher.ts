// The frozen BERT teacher: an onnxruntime-node session behind a small API.
//   ids + attention mask [B, T] → logits [B, T, V] and the hidden states asked for (each [B, T, H]).
// When the ONNX graph outputs logits only (a default fill-mask export), the hidden states are exposed by
// graph surgery (src/core/onnx.ts): the outputs of the embedding LayerNorm and of each layer's output
// LayerNorm become graph outputs.

import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { DistillError, FileFormatError, InputError, MismatchError } from '../src/core/errors.js';
import {
  appendToGraph,
  attentionTensors,
  graphInfo,
  layerNormOutputs,
  readOnnx,
  onnx,
  type GraphInfo,
} from '../src/core/onnx.js';
import { softTargetNodes, SOFT_NEG_ENTROPY_OUTPUT, SOFT_TARGETS_OUTPUT, SOFT_TOPK_IDS_OUTPUT } from './soft-targets.js';
import { assertModelDir, findOnnxFile, readEncoderConfig, type EncoderConfig } from '../src/core/model-dir.js';
import { WordPieceTokenizer } from '../corpus/tokenizer.js';

export type TeacherExecutionProvider = 'cpu' | 'cuda' | 'webgpu';

export interface TeacherOptions {
  /**
   * Hidden states to return: 'all' (embedding output + every layer:
   * L+1 tensors), 'last' (layer L), 'none', or indices 0..L.
   */
  hiddenStates?: 'all' | 'last' | 'none' | number[];
  /** Threads for onnxruntime's CPU provider (intra-op); 0 lets onnxruntime choose. */
  threads?: number;
  executionProvider?: TeacherExecutionProvider;
  /** GPU index for the cuda / webgpu providers (one per MPI rank). */
  deviceId?: number;
  /** Option name to quote in errors (--model, --teacher). */
  optionName?: string;
  /** Also compute the distillation's soft targets at this temperature inside the graph (see softTargetNodes). */
  softTargetTemperature?: number;
  /** With softTargetTemperature: keep only the k largest soft targets of each token (0 or absent: all V). */
  softTargetTopK?: number;
  /** Fetch the logits (default true; the soft targets may be all a training run needs). */
  fetchLogits?: boolean;
  /**
   * Layers (0-based) whose self-attention probabilities [B, heads,
   * T, T] to return (TeacherOutput.intermediate "attention.L").
   */
  attentionLayers?: number[];
  /** Query/key/value projections [B, T, H] to return ("query.L", "key.L", "value.L"). */
  projections?: { layer: number; kind: 'query' | 'key' | 'value' }[];
}

export interface TeacherBatch {
  /** [B, T] token ids, row-major. */
  inputIds: Int32Array;
  /** [B, T] 1 for real tokens, 0 for padding. */
  attentionMask: Int32Array;
  batchSize: number;
  seqLen: number;
}

export interface TeacherOutput {
  /** [B, T, V]; empty when fetchLogits is false. */
  logits: Float32Array;
  /**
   * softmax(logits/τ) [B, T, V] and Σ p log p [B, T], when softTargetTemperature is set; with softTargetTopK
   * = k, the k largest of each token [B, T, k] and their ids [B, T, k] instead (no negEntropy).
   */
  soft?: { probs: Float32Array; negEntropy?: Float32Array; topkIds?: BigInt64Array };
  /** The requested hidden states in the order of `hiddenStateIndices`, each [B, T, H]. */
  hiddenStates: Float32Array[];
  /**
   * The attention probabilities and projections asked for (attentionLayers,
   * projections), by key ("attention.2", "value.3").
   */
  intermediate: Record<string, Float32Array>;
}

const FEEDABLE_INPUTS = new Set(['input_ids', 'attention_mask', 'token_type_ids']);
const INT64 = onnx.TensorProto.DataType.INT64;
const INT32 = onnx.TensorProto.DataType.INT32;

/**
 * The teacher's execution provider when none is named: cuda when its provider libraries are installed, else
 * webgpu when the student runs on a WebGPU device (a GPU run), else cpu.
 */
export function defaultTeacherEp(studentOnWebgpu: boolean): TeacherExecutionProvider {
  if (cudaProviderInstalled()) return 'cuda';
  return studentOnWebgpu ? 'webgpu' : 'cpu';
}

/** Whether onnxruntime-node's CUDA provider libraries were installed (they are downloaded, not bundled). */
export function cudaProviderInstalled(): boolean {
  try {
    const require = createRequire(import.meta.url);
    const root = dirname(require.resolve('onnxruntime-node/package.json'));
    return existsSync(join(root, 'bin', 'napi-v6', process.platform, process.arch, 'libonnxruntime_providers_cuda.so'));
  } catch {
    return false;
  }
}

export class Teacher {
  readonly dir: string;
  readonly config: EncoderConfig;
  readonly tokenizer: WordPieceTokenizer;
  readonly onnxPath: string;
  /** Which hidden states `forward` returns: 0 = embedding output, i = output of layer i. */
  readonly hiddenStateIndices: number[];
  /** True when the hidden states come from graph surgery on a logits-only export. */
  readonly surgery: boolean;
  readonly executionProvider: TeacherExecutionProvider;
  /** On a GPU provider: how many of the graph's nodes onnxruntime ran on each provider in the first run. */
  nodesByProvider: Record<string, number> | undefined;
  private readonly session: ort.InferenceSession;
  private readonly logitsName: string;
  private readonly hiddenNames: string[];
  private readonly inputTypes: Map<string, 'int64' | 'int32'>;
  private readonly softNames: string[];
  private readonly fetchLogits: boolean;
  /** Key ("attention.2") → graph tensor, for TeacherOutput.intermediate. */
  private readonly intermediateNames: Map<string, string>;

  private constructor(init: {
    dir: string;
    config: EncoderConfig;
    tokenizer: WordPieceTokenizer;
    onnxPath: string;
    session: ort.InferenceSession;
    logitsName: string;
    hiddenNames: string[];
    hiddenStateIndices: number[];
    surgery: boolean;
    inputTypes: Map<string, 'int64' | 'int32'>;
    executionProvider: TeacherExecutionProvider;
    softNames: string[];
    fetchLogits: boolean;
    intermediateNames: Map<string, string>;
  }) {
    this.intermediateNames = init.intermediateNames;
    this.softNames = init.softNames;
    this.fetchLogits = init.fetchLogits;
    this.dir = init.dir;
    this.config = init.config;
    this.tokenizer = init.tokenizer;
    this.onnxPath = init.onnxPath;
    this.session = init.session;
    this.logitsName = init.logitsName;
    this.hiddenNames = init.hiddenNames;
    this.hiddenStateIndices = init.hiddenStateIndices;
    this.surgery = init.surgery;
    this.inputTypes = init.inputTypes;
    this.executionProvider = init.executionProvider;
  }

  /** Load and validate a model folder (see src/core/model-dir.ts for the layout). */
  static async load(dir: string, options: TeacherOptions = {}): Promise<Teacher> {
    const optionName = options.optionName ?? '--teacher';
    assertModelDir(dir, optionName);
    const config = readEncoderConfig(dir);
    const tokenizer = WordPieceTokenizer.fromDir(dir);
    const configPath = join(dir, 'config.json');
    if (tokenizer.vocabSize !== config.vocabSize) {
      throw new MismatchError(
        `vocabulary sizes disagree: ${tokenizer.info.source} has ${tokenizer.vocabSize} tokens, ${configPath} says ` +
          `vocab_size ${config.vocabSize}`,
        'the tokenizer and the model must come from the same checkpoint',
      );
    }
    const indices = hiddenStateIndices(options.hiddenStates ?? 'all', config.numLayers, configPath);
    const onnxPath = findOnnxFile(dir, indices.length > 0);
    const file = readOnnx(onnxPath);
    const site: GraphSite = { onnxPath, configPath, config, graph: graphInfo(file.model) };
    const inputTypes = feedableInputs(site);
    const { logitsName, staticVocab } = logitsOutput(site);
    // The graph as the session runs it: with the hidden states, attention tensors and soft targets asked for.
    const hidden = hiddenOutputs(site, file.bytes, indices);
    const inner = intermediateOutputs(site, hidden.bytes, hidden.names, options);
    const opset = Number(file.model.opsetImport?.find((o) => !o.domain || o.domain === 'ai.onnx')?.version ?? 17);
    const soft = softTargetOutputs(site, inner.bytes, logitsName, opset, options);
    const ep = options.executionProvider ?? 'cpu';
    const { session, profilePrefix } = await openSession(soft.bytes, onnxPath, ep, options);
    const teacher = new Teacher({
      dir,
      config,
      tokenizer,
      onnxPath,
      session,
      logitsName,
      hiddenNames: hidden.names,
      hiddenStateIndices: indices,
      surgery: hidden.surgery,
      inputTypes,
      executionProvider: ep,
      softNames: soft.names,
      fetchLogits: options.fetchLogits ?? true,
      intermediateNames: inner.names,
    });
    // A symbolic vocabulary dimension: check it on a two-token forward.
    if (staticVocab === undefined || profilePrefix) {
      const probe = await teacher.runRaw(
        {
          inputIds: Int32Array.from([tokenizer.clsId, tokenizer.sepId]),
          attentionMask: Int32Array.from([1, 1]),
          batchSize: 1,
          seqLen: 2,
        },
        [logitsName],
      );
      const v = probe[0]!.dims[2];
      if (v !== config.vocabSize) {
        throw new MismatchError(
          `vocabulary sizes disagree: ${onnxPath} output "${logitsName}" gives ${v} logits per token, ${configPath} ` +
            `says vocab_size ${config.vocabSize}`,
        );
      }
    }
    if (profilePrefix) {
      try {
        teacher.nodesByProvider = checkPlacement(session, dirname(profilePrefix), ep, optionName);
      } catch (e) {
        await session.release();
        throw e;
      }
    }
    return teacher;
  }

  private async runRaw(batch: TeacherBatch, fetches: string[]): Promise<ort.Tensor[]> {
    const { batchSize: B, seqLen: T } = batch;
    if (batch.inputIds.length !== B * T || batch.attentionMask.length !== B * T) {
      throw new InputError(
        `teacher batch: input_ids has ${batch.inputIds.length} and ` +
          `attention_mask ${batch.attentionMask.length} values, expected ${B}×${T}`,
      );
    }
    if (T > this.config.maxPositions) {
      throw new InputError(
        `sequence of ${T} tokens is longer than the model's ${this.config.maxPositions} positions ` +
          `(${join(this.dir, 'config.json')} max_position_embeddings)`,
      );
    }
    const feeds: Record<string, ort.Tensor> = {};
    const make = (name: string, values: Int32Array): ort.Tensor =>
      this.inputTypes.get(name) === 'int64'
        ? new ort.Tensor(
            'int64',
            BigInt64Array.from(values, (v) => BigInt(v)),
            [B, T],
          )
        : new ort.Tensor('int32', values, [B, T]);
    feeds['input_ids'] = make('input_ids', batch.inputIds);
    feeds['attention_mask'] = make('attention_mask', batch.attentionMask);
    if (this.inputTypes.has('token_type_ids')) feeds['token_type_ids'] = make('token_type_ids', new Int32Array(B * T));
    const result = await this.session.run(feeds, fetches);
    return fetches.map((f) => result[f]!);
  }

  /**
   * Logits and the hidden states of `hiddenStateIndices` for one batch; `fetch.logits` fetches the logits this time
   * even when the teacher was loaded without them.
   */
  async forward(batch: TeacherBatch, fetch: { logits?: boolean } = {}): Promise<TeacherOutput> {
    const fetches = [
      ...new Set([
        ...(this.fetchLogits || fetch.logits ? [this.logitsName] : []),
        ...this.hiddenNames,
        ...this.softNames,
        ...this.intermediateNames.values(),
      ]),
    ];
    const tensors = await this.runRaw(batch, fetches);
    const byName = new Map(fetches.map((f, i) => [f, tensors[i]!.data as Float32Array]));
    const topkIds = this.softNames.includes(SOFT_TOPK_IDS_OUTPUT)
      ? (tensors[fetches.indexOf(SOFT_TOPK_IDS_OUTPUT)]!.data as BigInt64Array)
      : undefined;
    return {
      logits: byName.get(this.logitsName) ?? new Float32Array(0),
      hiddenStates: this.hiddenNames.map((n) => byName.get(n)!),
      intermediate: Object.fromEntries([...this.intermediateNames].map(([key, n]) => [key, byName.get(n)!])),
      soft: this.softNames.length
        ? { probs: byName.get(SOFT_TARGETS_OUTPUT)!, negEntropy: byName.get(SOFT_NEG_ENTROPY_OUTPUT), topkIds }
        : undefined,
    };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** The graph being loaded, and the files its errors name. */
interface GraphSite {
  onnxPath: string;
  configPath: string;
  config: EncoderConfig;
  graph: GraphInfo;
}

/** The hidden states asked for, as indices 0..L (0: the embeddings' output). */
function hiddenStateIndices(
  wanted: NonNullable<TeacherOptions['hiddenStates']>,
  L: number,
  configPath: string,
): number[] {
  const indices =
    wanted === 'all'
      ? Array.from({ length: L + 1 }, (_, i) => i)
      : wanted === 'last'
        ? [L]
        : wanted === 'none'
          ? []
          : [...wanted];
  for (const i of indices) {
    if (!Number.isInteger(i) || i < 0 || i > L)
      throw new InputError(`hidden state ${i} does not exist: ${configPath} has ${L} layers, so 0..${L}`);
  }
  return indices;
}

/** The graph's inputs, each one we feed (input_ids, attention_mask, token_type_ids), with its integer type. */
function feedableInputs({ graph, onnxPath }: GraphSite): Map<string, 'int64' | 'int32'> {
  const inputTypes = new Map<string, 'int64' | 'int32'>();
  for (const v of graph.inputs) {
    if (!FEEDABLE_INPUTS.has(v.name)) {
      throw new FileFormatError(
        onnxPath,
        `graph input "${v.name}" is not one we feed (we feed input_ids, ` +
          `attention_mask and, if the graph has it, token_type_ids)`,
        'export with inputs input_ids and attention_mask (token_type_ids optional)',
      );
    }
    if (v.elemType !== INT64 && v.elemType !== INT32) {
      throw new FileFormatError(
        onnxPath,
        `graph input "${v.name}" has element type ${v.elemType}, expected int64 or int32`,
      );
    }
    inputTypes.set(v.name, v.elemType === INT64 ? 'int64' : 'int32');
  }
  for (const required of ['input_ids', 'attention_mask']) {
    if (!inputTypes.has(required)) {
      throw new FileFormatError(
        onnxPath,
        `graph has no input "${required}" (inputs: ${graph.inputs.map((v) => v.name).join(', ') || 'none'})`,
        'export with inputs input_ids and attention_mask',
      );
    }
  }
  return inputTypes;
}

/** The logits output ("logits", else the first) and its vocabulary size when the graph states it. */
function logitsOutput({ graph, onnxPath, config, configPath }: GraphSite): {
  logitsName: string;
  staticVocab: number | undefined;
} {
  const outputNames = graph.outputs.map((o) => o.name);
  const logitsName = outputNames.includes('logits') ? 'logits' : outputNames[0];
  if (!logitsName) throw new FileFormatError(onnxPath, 'the graph has no outputs');
  const dims = graph.outputs.find((o) => o.name === logitsName)!.dims ?? [];
  if (dims.length && dims.length !== 3) {
    throw new FileFormatError(
      onnxPath,
      `output "${logitsName}" has rank ${dims.length}, expected logits [batch, sequence, vocab]`,
      'export the masked-LM model (BertForMaskedLM, task fill-mask), not the base encoder',
    );
  }
  const staticVocab = typeof dims[2] === 'number' && dims[2] > 0 ? dims[2] : undefined;
  if (staticVocab !== undefined && staticVocab !== config.vocabSize) {
    throw new MismatchError(
      `vocabulary sizes disagree: ${onnxPath} output "${logitsName}" has ${staticVocab} logits per token, ` +
        `${configPath} says vocab_size ${config.vocabSize}`,
      'the ONNX export and config.json must come from the same checkpoint',
    );
  }
  return { logitsName, staticVocab };
}

/** Hidden states: outputs the export already has (hidden_states.N), else graph surgery at the LayerNorms. */
function hiddenOutputs(
  { graph, onnxPath, config, configPath }: GraphSite,
  bytes: Uint8Array,
  indices: number[],
): { names: string[]; surgery: boolean; bytes: Uint8Array } {
  if (indices.length === 0) return { names: [], surgery: false, bytes };
  const L = config.numLayers;
  const outputNames = graph.outputs.map((o) => o.name);
  const existing = new Map<number, string>();
  for (const name of outputNames) {
    const m = /^hidden_states[._](\d+)$/.exec(name);
    if (m) existing.set(Number(m[1]), name);
  }
  if (indices.every((i) => existing.has(i)))
    return { names: indices.map((i) => existing.get(i)!), surgery: false, bytes };
  const lns = layerNormOutputs(graph);
  // Embedding LayerNorm, then two per layer (attention output, layer output), then the MLM head's.
  if (lns.length !== 2 * L + 2 && lns.length !== 2 * L + 1) {
    throw new FileFormatError(
      onnxPath,
      `found ${lns.length} layer normalisations in the graph, expected ${2 * L + 2} for ${L} layers ` +
        `(${configPath} num_hidden_layers)`,
      'export the hidden states yourself (output_hidden_states=True, outputs hidden_states.0 … ' +
        'hidden_states.N) as model-hidden.onnx',
    );
  }
  const all = Array.from({ length: L + 1 }, (_, i) => lns[2 * i]!);
  const names = indices.map((i) => all[i]!);
  const missing = [...new Set(names)].filter((n) => !outputNames.includes(n));
  return {
    names,
    surgery: true,
    bytes: appendToGraph(bytes, {
      outputs: missing.map((name) => ({ name, elemType: onnx.TensorProto.DataType.FLOAT })),
    }),
  };
}

/** Attention probabilities and projections, by graph surgery (src/core/onnx.ts attentionTensors). */
function intermediateOutputs(
  { graph, onnxPath, config, configPath }: GraphSite,
  bytes: Uint8Array,
  hiddenNames: string[],
  options: TeacherOptions,
): { names: Map<string, string>; bytes: Uint8Array } {
  const L = config.numLayers;
  const names = new Map<string, string>();
  const wantedAttention = options.attentionLayers ?? [];
  const wantedProjections = options.projections ?? [];
  if (wantedAttention.length === 0 && wantedProjections.length === 0) return { names, bytes };
  const attentions = attentionTensors(graph, onnxPath);
  if (attentions.length !== L) {
    throw new FileFormatError(
      onnxPath,
      `found ${attentions.length} self-attentions (a Softmax feeding a product with the values), expected ${L} ` +
        `(${configPath} num_hidden_layers)`,
      'export BertForMaskedLM with torch.onnx.export or optimum-cli export onnx (the attention unfused)',
    );
  }
  for (const l of [...wantedAttention, ...wantedProjections.map((p) => p.layer)]) {
    if (!Number.isInteger(l) || l < 0 || l >= L)
      throw new InputError(`teacher layer ${l} does not exist: ${configPath} has ${L} layers, so 0..${L - 1}`);
  }
  for (const l of wantedAttention) names.set(`attention.${l}`, attentions[l]!.probs);
  for (const p of wantedProjections) names.set(`${p.kind}.${p.layer}`, attentions[p.layer]![p.kind]);
  const outputNames = graph.outputs.map((o) => o.name);
  const missing = [...new Set(names.values())].filter((n) => !outputNames.includes(n) && !hiddenNames.includes(n));
  return {
    names,
    bytes: appendToGraph(bytes, {
      outputs: missing.map((name) => ({ name, elemType: onnx.TensorProto.DataType.FLOAT })),
    }),
  };
}

/** The soft targets computed inside the graph (teacher/soft-targets.ts), when a temperature is given. */
function softTargetOutputs(
  { config, configPath }: GraphSite,
  bytes: Uint8Array,
  logitsName: string,
  opset: number,
  options: TeacherOptions,
): { names: string[]; bytes: Uint8Array } {
  if (options.softTargetTemperature === undefined) return { names: [], bytes };
  const topk = options.softTargetTopK ?? 0;
  if (!Number.isInteger(topk) || topk < 0 || topk >= config.vocabSize) {
    throw new InputError(
      `soft_targets_topk ${topk} must be a whole number from 1 to ${config.vocabSize - 1}, or 0 for the whole ` +
        `vocabulary (${configPath} has vocab_size ${config.vocabSize})`,
    );
  }
  return {
    names: [SOFT_TARGETS_OUTPUT, topk > 0 ? SOFT_TOPK_IDS_OUTPUT : SOFT_NEG_ENTROPY_OUTPUT],
    bytes: appendToGraph(
      bytes,
      softTargetNodes(logitsName, config.vocabSize, options.softTargetTemperature, {
        topk,
        opset,
        webgpu: options.executionProvider === 'webgpu',
      }),
    ),
  };
}

/**
 * The onnxruntime session on `ep`. On a GPU provider, onnxruntime may place any node on the CPU (and says so
 * only in a log line): the session then profiles its first run so that the placement can be read back and
 * checked (checkPlacement); `profilePrefix` says where.
 */
async function openSession(
  bytes: Uint8Array,
  onnxPath: string,
  ep: TeacherExecutionProvider,
  options: TeacherOptions,
): Promise<{ session: ort.InferenceSession; profilePrefix: string | undefined }> {
  if (ep === 'cuda' && !cudaProviderInstalled()) {
    throw new DistillError(
      'the CUDA execution provider of onnxruntime-node is not installed',
      'reinstall with CUDA 12 present: `ONNXRUNTIME_NODE_INSTALL=cuda12 npm ' +
        'rebuild onnxruntime-node` (see README, "CUDA execution provider")',
    );
  }
  const profilePrefix = ep === 'cpu' ? undefined : join(mkdtempSync(join(tmpdir(), 'distill-ort-')), 'placement');
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: 'all',
    intraOpNumThreads: options.threads ?? 0,
    executionProviders:
      ep === 'cpu'
        ? ['cpu']
        : ep === 'cuda'
          ? [{ name: 'cuda', deviceId: options.deviceId ?? 0 }]
          : [{ name: 'webgpu' }, 'cpu'],
    ...(profilePrefix ? { enableProfiling: true, profileFilePrefix: profilePrefix } : {}),
  };
  try {
    return { session: await ort.InferenceSession.create(bytes, sessionOptions), profilePrefix };
  } catch (e) {
    throw new FileFormatError(onnxPath, `onnxruntime could not load the graph: ${(e as Error).message}`);
  }
}

const PROVIDER_NAMES: Record<TeacherExecutionProvider, string> = {
  cpu: 'CPUExecutionProvider',
  cuda: 'CUDAExecutionProvider',
  webgpu: 'WebGpuExecutionProvider',
};

/**
 * Read the placement of the graph's nodes from the profile of the session's first run (onnxruntime's own
 * record: one event per node run, with the provider that ran it), remove the profile, and fail when the
 * provider asked for ran none of them (a silent fall-back to the CPU). Returns the node count per provider.
 */
function checkPlacement(
  session: ort.InferenceSession,
  profileDir: string,
  ep: TeacherExecutionProvider,
  optionName: string,
): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const provider of profiledPlacement(session, profileDir).values())
    counts[provider] = (counts[provider] ?? 0) + 1;
  const error = placementError(counts, ep, optionName);
  if (error) throw error;
  return counts;
}

/**
 * The provider that ran each node (by node name) in the runs of a session created with `enableProfiling` and a
 * `profileFilePrefix` inside `profileDir`, from onnxruntime's profile, which this ends and removes with the folder.
 */
export function profiledPlacement(session: ort.InferenceSession, profileDir: string): Map<string, string> {
  session.endProfiling();
  const placement = new Map<string, string>();
  try {
    for (const f of readdirSync(profileDir)) {
      const events = JSON.parse(readFileSync(join(profileDir, f), 'utf8')) as {
        cat?: string;
        name?: string;
        args?: { provider?: string };
      }[];
      for (const e of events) {
        if (e.cat === 'Node' && e.args?.provider && e.name?.endsWith('_kernel_time'))
          placement.set(e.name.slice(0, -'_kernel_time'.length), e.args.provider);
      }
    }
  } finally {
    rmSync(profileDir, { recursive: true, force: true });
  }
  return placement;
}

/** The error for a placement in which the provider asked for ran none of the nodes, else undefined. */
export function placementError(
  counts: Record<string, number>,
  ep: TeacherExecutionProvider,
  optionName: string,
): DistillError | undefined {
  if (counts[PROVIDER_NAMES[ep]]) return undefined;
  const placed =
    Object.entries(counts)
      .map(([p, n]) => `${n} on ${p}`)
      .join(', ') || 'no nodes recorded';
  return new DistillError(
    `${optionName}: the ${ep} execution provider was asked for, ` +
      `but onnxruntime ran none of the teacher's nodes on it (${placed})`,
    ep === 'webgpu'
      ? 'check the GPU driver and Vulkan loader (distill train ' +
          '--backend webgpu prints the adapter), or use --teacher-ep cpu'
      : 'check the CUDA 12 installation, or use --teacher-ep cpu',
  );
}
