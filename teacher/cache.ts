// The teacher's outputs on training batches, kept on disk (config key teacher_cache) so that a later run on the
// same batches reads them instead of running the teacher: a resumed run, a rerun, another variant of an ablation
// (same corpus, seed, masking and batch size), or a later epoch wherever the masked batches repeat.
//
// Content-addressed: an entry's name is the SHA-256 of what the teacher was asked (the masked input ids, the
// attention mask, the batch's shape and the rows whose soft targets the KL reads), in a folder named by the
// SHA-256 of what makes the teacher's answer (its model.onnx bytes, the temperature, k, the execution provider
// and the intermediate outputs asked for). So an entry can only be read back by a request that would have
// computed exactly it: nothing to invalidate, and a resumed run reads the same bytes the first run computed
// (bit-identical training). Only top-k soft targets are cached (soft_targets_topk > 0: k values and ids per
// row; the full vocabulary would be V floats per token).
//
// An entry is an Arrow IPC file of one record batch of one row: a List column per tensor (last_hidden,
// probs, topk_ids, neg_entropy, and intermediate.KEY for the intermediate-layer losses), written to a temporary
// name and renamed, so that a run stopped mid-write leaves no partial entry.

import { createHash } from 'node:crypto';
import { existsSync, openSync, readFileSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import {
  DataType,
  Field,
  Float32,
  Float64,
  Int32,
  List,
  makeData,
  RecordBatch,
  RecordBatchFileWriter,
  RecordBatchReader,
  Schema,
  Struct,
  type Data,
} from 'apache-arrow';
import { DistillError } from '../src/core/errors.js';
import { findOnnxFile } from '../src/core/model-dir.js';
import { makeDir, writeFileAtomic } from '../src/core/out.js';
import type { RemoteTeacherOutput } from './remote.js';
import type { ForwardRequest } from './worker.js';

/** What makes the teacher's answer to a batch, besides the batch itself. */
export interface TeacherCacheIdentity {
  /** The teacher folder (its model.onnx is hashed). */
  teacherDir: string;
  temperature: number;
  topk: number;
  executionProvider: string;
  /** The intermediate outputs asked for (losses/layer-map.ts keys), sorted. */
  outputs: string[];
}

type Request = Omit<ForwardRequest, 'kind' | 'id'>;

/** SHA-256 of a file, read in 16 MiB pieces (a bert-base model.onnx is ~440 MB). */
function fileDigest(path: string): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(1 << 24);
    for (let n = readSync(fd, buf); n > 0; n = readSync(fd, buf)) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

function bytes(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

const COLUMNS = {
  last_hidden: new Float32(),
  probs: new Float32(),
  topk_ids: new Int32(),
  neg_entropy: new Float64(),
} as const;

/** One row holding `values` as a list: List<Int32>, List<Float64> or List<Float32> after the array's type. */
function listColumn(values: Float32Array | Int32Array | Float64Array): Data<List> {
  // makeData is typed per element type; the three cases share one shape, so one (typed) case stands for all.
  const type = (
    values instanceof Int32Array ? new Int32() : values instanceof Float64Array ? new Float64() : new Float32()
  ) as Float32;
  const child = makeData({ type, length: values.length, data: values as Float32Array });
  return makeData({
    type: new List(new Field('item', type, false)),
    length: 1,
    nullCount: 0,
    valueOffsets: Int32Array.from([0, values.length]),
    child,
  }) as unknown as Data<List>;
}

export class TeacherCache {
  hits = 0;
  misses = 0;

  private constructor(
    readonly dir: string,
    private readonly temperature: number,
  ) {}

  /** The cache folder for this teacher and these settings under `root` (made if absent). */
  static open(root: string, identity: TeacherCacheIdentity): TeacherCache {
    if (!(identity.topk > 0))
      throw new DistillError(
        'teacher_cache needs top-k soft targets (soft_targets_topk > 0)',
        'set soft_targets_topk (e.g. 32), or teacher_cache null',
      );
    const key = createHash('sha256')
      .update(
        JSON.stringify({
          model: fileDigest(teacherGraph(identity.teacherDir)),
          temperature: identity.temperature,
          topk: identity.topk,
          ep: identity.executionProvider,
          outputs: [...identity.outputs].sort(),
        }),
      )
      .digest('hex')
      .slice(0, 32);
    const dir = join(root, key);
    makeDir(dir);
    writeFileAtomic(
      join(dir, 'identity.json'),
      JSON.stringify({ ...identity, outputs: [...identity.outputs].sort() }, null, 1) + '\n',
    );
    return new TeacherCache(dir, identity.temperature);
  }

  /** The entry's path for a request. */
  entryPath(req: Request): string {
    const h = createHash('sha256');
    h.update(JSON.stringify([req.batchSize, req.seqLen, req.keepLogits, req.fullLogits]));
    for (const a of [req.inputIds, req.attentionMask, req.softRows]) h.update(bytes(a)).update('|');
    const name = h.digest('hex');
    return join(this.dir, name.slice(0, 2), `${name}.arrow`);
  }

  /** The teacher's outputs for `req`: from the cache, else from `compute` (then stored). */
  async forward(req: Request, compute: () => Promise<RemoteTeacherOutput>): Promise<RemoteTeacherOutput> {
    if (req.keepLogits || req.fullLogits) return compute(); // raw logits are not cached (V floats per row)
    const path = this.entryPath(req);
    if (existsSync(path)) {
      this.hits++;
      return this.read(path);
    }
    this.misses++;
    const out = await compute();
    this.write(path, out);
    return out;
  }

  private write(path: string, out: RemoteTeacherOutput): void {
    if (!out.soft.topkIds)
      throw new DistillError('teacher_cache: the teacher gave full soft targets', 'set soft_targets_topk > 0');
    const arrays: [string, Float32Array | Int32Array | Float64Array][] = [
      ['last_hidden', out.lastHidden],
      ['probs', out.soft.probs],
      ['topk_ids', out.soft.topkIds],
      ['neg_entropy', out.soft.negEntropy],
      ...Object.keys(out.intermediate)
        .sort()
        .map((k) => [`intermediate.${k}`, out.intermediate[k]!] as [string, Float32Array]),
    ];
    const fields: Field[] = [];
    const children: Data[] = [];
    for (const [name, values] of arrays) {
      const column = listColumn(values);
      fields.push(new Field(name, column.type, false));
      children.push(column);
    }
    const schema = new Schema(fields);
    const batch = new RecordBatch(
      schema,
      makeData({ type: new Struct(schema.fields), length: 1, nullCount: 0, children }),
    );
    makeDir(join(path, '..'));
    writeFileAtomic(path, RecordBatchFileWriter.writeAll([batch]).toUint8Array(true));
  }

  private read(path: string): RemoteTeacherOutput {
    const bad = (why: string): DistillError =>
      new DistillError(
        `teacher_cache: ${path} is not a readable entry (${why})`,
        'delete the file (the teacher recomputes it), or the whole cache folder',
      );
    let batch: RecordBatch | undefined;
    try {
      const reader = RecordBatchReader.from(readFileSync(path));
      batch = reader.next().value as RecordBatch | undefined;
    } catch (e) {
      throw bad((e as Error).message);
    }
    if (!batch || batch.numRows !== 1) throw bad('no record batch of one row');
    const column = <T extends Float32Array | Int32Array | Float64Array>(name: string, type: DataType): T => {
      const field = batch.schema.fields.find((f) => f.name === name);
      const list = field?.type as List | undefined;
      const itemType = list instanceof List ? (list.children[0]?.type as DataType | undefined) : undefined;
      if (!field || itemType?.typeId !== type.typeId) throw bad(`column ${name} missing or of another type`);
      const values = (batch.getChild(name)!.get(0) as { toArray(): T }).toArray();
      return values.slice() as T; // own memory, not a view into the file's buffer
    };
    const intermediate: Record<string, Float32Array> = {};
    for (const f of batch.schema.fields) {
      if (f.name.startsWith('intermediate.'))
        intermediate[f.name.slice('intermediate.'.length)] = column<Float32Array>(f.name, COLUMNS.probs);
    }
    return {
      lastHidden: column<Float32Array>('last_hidden', COLUMNS.last_hidden),
      soft: {
        temperature: this.temperature,
        probs: column<Float32Array>('probs', COLUMNS.probs),
        topkIds: column<Int32Array>('topk_ids', COLUMNS.topk_ids),
        negEntropy: column<Float64Array>('neg_entropy', COLUMNS.neg_entropy),
      },
      intermediate,
    };
  }
}

/** The teacher's graph the cache key digests: model.onnx, or the one a Hugging Face layout has (onnx/model.onnx). */
function teacherGraph(dir: string): string {
  const top = join(dir, 'model.onnx');
  return existsSync(top) ? top : findOnnxFile(dir, true);
}
