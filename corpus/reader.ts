// Streams a prepared corpus as length-grouped, padded batches, one Arrow record batch at a time.
//
// Order: each epoch shuffles the record batches of all shards ("units", seeded by (seed, epoch)). Within a
// unit (seeded by (seed, epoch, unit)): sequences are shuffled, grouped by length bucket (bucket_width
// tokens), cut into global batches of batch_size · world rows, and the batches are shuffled. A global batch
// is split between ranks by rows (rank r takes rows ⌊r·n/w⌋ … ⌊(r+1)·n/w⌋), so ranks are disjoint and cover
// everything, and every rank knows the whole global batch (masking draws over all of it, see
// RECIPE.md "Data parallel").
//
// The cursor (epoch, unit, batch) says where the next batch comes from. Every random draw derives from
// (seed, epoch, unit[, batch]), so a restored cursor continues the batch sequence exactly.
//
// A validation split (`heldOut`) holds whole record batches back: heldOutUnits() picks them from the seed
// alone, so the training reader (part 'train') never sees them, the validation reader (part 'valid') sees only
// them, and a resumed run holds back the same ones.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RecordBatchReader, type RecordBatch } from 'apache-arrow';
import { FileFormatError, InputError } from '../src/core/errors.js';
import { readCorpusMeta, RECORD_BATCH_ROWS, type CorpusMeta } from './prepare.js';
import { Rng } from './rng.js';

export interface Cursor {
  epoch: number;
  /** Index into this epoch's shuffled unit order. */
  unit: number;
  /** Index into the unit's shuffled batch order. */
  batch: number;
}

export interface ReaderOptions {
  /** Sequences per rank per batch. */
  batchSize: number;
  rank: number;
  world: number;
  seed: number;
  /** Sequences whose lengths fall in the same bucket of this many tokens are batched together (4). */
  bucketWidth: number;
  padId: number;
  /** Read only the training part or only the held-out part of a split (absent: every record batch). */
  heldOut?: {
    fraction: number;
    part: 'train' | 'valid';
    /** How errors name the fraction (default valid_fraction). */ optionName?: string;
  };
}

/** The record batches held out for validation: round(fraction · units), at least 1, drawn from the seed. */
export function heldOutUnits(
  units: number,
  fraction: number,
  seed: number,
  optionName = 'valid_fraction',
): Set<number> {
  if (!(fraction > 0)) return new Set();
  const count = Math.max(1, Math.round(fraction * units));
  if (count >= units) {
    throw new InputError(
      `${optionName} ${fraction} holds back ${count} of the corpus's ${units} record batches (${RECORD_BATCH_ROWS} ` +
        `sequences each), leaving none to train on`,
      `lower ${optionName}, prepare more text, or give a separate prepared ` +
        `corpus${optionName === 'valid_fraction' ? ' as valid_corpus' : ''}`,
    );
  }
  const order = Array.from({ length: units }, (_, i) => i);
  Rng.derive(seed, HELD_OUT_STREAM).shuffle(order);
  return new Set(order.slice(0, count));
}

const HELD_OUT_STREAM = 0x76616c69;

export interface GlobalBatch {
  /** [rows, seqLen] right-padded ids of the whole global batch (all ranks). */
  inputIds: Int32Array;
  /** [rows, seqLen] 1 for real tokens. */
  attentionMask: Int32Array;
  rows: number;
  seqLen: number;
  /** This rank's rows: [rowStart, rowEnd). */
  rowStart: number;
  rowEnd: number;
  /** Where this batch came from; the masking RNG derives from it. */
  position: Cursor;
  /** Where the next batch comes from. */
  next: Cursor;
}

interface Unit {
  shard: number;
  recordBatch: number;
  rows: number;
}

export class CorpusReader {
  readonly dir: string;
  readonly meta: CorpusMeta;
  readonly options: ReaderOptions;
  private readonly units: Unit[];
  private cursorValue: Cursor = { epoch: 0, unit: 0, batch: 0 };
  private cache: { key: string; batches: number[][] } | undefined;
  private shardCache: { shard: number; batches: RecordBatch[] } | undefined;

  constructor(dir: string, options: ReaderOptions) {
    this.dir = dir;
    this.meta = readCorpusMeta(dir);
    this.options = options;
    if (
      !Number.isInteger(options.world) ||
      options.world < 1 ||
      !Number.isInteger(options.rank) ||
      options.rank < 0 ||
      options.rank >= options.world
    ) {
      throw new InputError(`rank ${options.rank} of world size ${options.world} is not a valid partition`);
    }
    if (!Number.isInteger(options.batchSize) || options.batchSize < 1)
      throw new InputError(`batch_size ${options.batchSize} must be a positive whole number`);
    const all = this.meta.shards.flatMap((s, shard) =>
      Array.from({ length: s.record_batches }, (_, recordBatch) => ({
        shard,
        recordBatch,
        rows: Math.max(0, Math.min(RECORD_BATCH_ROWS, s.sequences - recordBatch * RECORD_BATCH_ROWS)),
      })),
    );
    if (all.length === 0) throw new FileFormatError(join(dir, 'meta.json'), 'the corpus has no shards');
    const split = options.heldOut;
    const held = split ? heldOutUnits(all.length, split.fraction, options.seed, split.optionName) : new Set<number>();
    this.units = split && held.size > 0 ? all.filter((_, i) => held.has(i) === (split.part === 'valid')) : all;
  }

  get cursor(): Cursor {
    return { ...this.cursorValue };
  }

  restore(cursor: Cursor): void {
    this.cursorValue = { ...cursor };
  }

  /** The record batches this reader reads ("shard:record batch"), e.g. to check that a split's parts are disjoint. */
  recordBatches(): string[] {
    return this.units.map((u) => `${u.shard}:${u.recordBatch}`);
  }

  /** Sequences this reader reads in one epoch (its part of a split). */
  get sequences(): number {
    return this.units.reduce((n, u) => n + u.rows, 0);
  }

  private unitOrder(epoch: number): number[] {
    const order = this.units.map((_, i) => i);
    Rng.derive(this.options.seed, epoch, 0x756e6974).shuffle(order);
    return order;
  }

  private recordBatch(unit: Unit): RecordBatch {
    if (this.shardCache?.shard !== unit.shard) {
      const path = join(this.dir, this.meta.shards[unit.shard]!.file);
      let bytes: Buffer;
      try {
        bytes = readFileSync(path);
      } catch (e) {
        throw new FileFormatError(path, `cannot read: ${(e as Error).message}`, 'prepare the corpus again');
      }
      const want = this.meta.shards[unit.shard]!.sha256;
      const got = want && createHash('sha256').update(bytes).digest('hex');
      if (want && got !== want) {
        throw new FileFormatError(
          path,
          `its contents changed after prepare wrote it: ` +
            `SHA-256 ${got!.slice(0, 12)}…, meta.json records ${want.slice(0, 12)}…`,
          'the shard is damaged (a disk, a copy, a hand edit): prepare the corpus again',
        );
      }
      try {
        this.shardCache = { shard: unit.shard, batches: [...RecordBatchReader.from(bytes)] };
      } catch (e) {
        throw new FileFormatError(
          path,
          `not a readable Arrow file: ${(e as Error).message}`,
          'the shard is damaged: prepare the corpus again',
        );
      }
    }
    const rb = this.shardCache.batches[unit.recordBatch];
    if (!rb)
      throw new FileFormatError(
        join(this.dir, this.meta.shards[unit.shard]!.file),
        `record batch ${unit.recordBatch} is missing`,
        'prepare the corpus again',
      );
    return rb;
  }

  /** The sequences of a unit: [offsets, values] views of its input_ids column. */
  private unitSequences(unit: Unit): { offsets: Int32Array; values: Int32Array; count: number } {
    const rb = this.recordBatch(unit);
    const column = rb.getChild('input_ids');
    if (!column || column.data.length !== 1)
      throw new FileFormatError(join(this.dir, this.meta.shards[unit.shard]!.file), 'no single-chunk column input_ids');
    const data = column.data[0]!;
    const offsets = data.valueOffsets as Int32Array;
    const values = data.children[0]!.values as Int32Array;
    // Ids outside the vocabulary would reach the teacher's embedding lookup as an onnxruntime error.
    const vocab = this.meta.tokenizer.vocab_size;
    for (let i = 0; i < values.length; i++) {
      if (values[i]! < 0 || values[i]! >= vocab) {
        throw new FileFormatError(
          join(this.dir, this.meta.shards[unit.shard]!.file),
          `record batch ${unit.recordBatch} holds token id ${values[i]}, outside the vocabulary (0…${vocab - 1})`,
          'the shard is damaged: prepare the corpus again',
        );
      }
    }
    return { offsets: offsets.subarray(data.offset, data.offset + data.length + 1), values, count: data.length };
  }

  /** The unit's global batches (each a list of row indices into the unit), in their shuffled order. */
  private unitBatches(epoch: number, unitIndex: number): number[][] {
    const key = `${epoch}:${unitIndex}`;
    if (this.cache?.key === key) return this.cache.batches;
    const unit = this.units[this.unitOrder(epoch)[unitIndex]!]!;
    const { offsets, count } = this.unitSequences(unit);
    const rng = Rng.derive(this.options.seed, epoch, unitIndex, 0x62617463);
    const rows = Array.from({ length: count }, (_, i) => i);
    rng.shuffle(rows);
    const bucket = (i: number): number => Math.floor((offsets[i + 1]! - offsets[i]!) / this.options.bucketWidth);
    rows.sort((a, b) => bucket(a) - bucket(b)); // stable: shuffled order within a bucket
    const global = this.options.batchSize * this.options.world;
    const batches: number[][] = [];
    for (let i = 0; i < rows.length; i += global) batches.push(rows.slice(i, i + global));
    rng.shuffle(batches);
    this.cache = { key, batches };
    return batches;
  }

  /** The next global batch; moves the cursor (epochs roll over). */
  next(): GlobalBatch {
    let { epoch, unit, batch } = this.cursorValue;
    let batches = this.unitBatches(epoch, unit);
    while (batch >= batches.length) {
      batch = 0;
      unit++;
      if (unit >= this.units.length) {
        unit = 0;
        epoch++;
      }
      batches = this.unitBatches(epoch, unit);
    }
    const position = { epoch, unit, batch };
    const rowsOfBatch = batches[batch]!;
    const { offsets, values } = this.unitSequences(this.units[this.unitOrder(epoch)[unit]!]!);
    const n = rowsOfBatch.length;
    const seqLen = Math.max(...rowsOfBatch.map((i) => offsets[i + 1]! - offsets[i]!));
    const inputIds = new Int32Array(n * seqLen).fill(this.options.padId);
    const attentionMask = new Int32Array(n * seqLen);
    rowsOfBatch.forEach((i, r) => {
      const len = offsets[i + 1]! - offsets[i]!;
      inputIds.set(values.subarray(offsets[i], offsets[i + 1]), r * seqLen);
      attentionMask.fill(1, r * seqLen, r * seqLen + len);
    });
    const { rank, world } = this.options;
    this.cursorValue = { epoch, unit, batch: batch + 1 };
    return {
      inputIds,
      attentionMask,
      rows: n,
      seqLen,
      rowStart: Math.floor((rank * n) / world),
      rowEnd: Math.floor(((rank + 1) * n) / world),
      position,
      next: this.cursor,
    };
  }

  /** Global batches in one epoch. */
  batchesPerEpoch(): number {
    const global = this.options.batchSize * this.options.world;
    return this.units.reduce((n, u) => n + Math.ceil(u.rows / global), 0);
  }
}

/** Rows [start, end) of a [rows, seqLen] array. */
export function sliceRows(a: Int32Array, seqLen: number, start: number, end: number): Int32Array {
  return a.subarray(start * seqLen, end * seqLen);
}
