// Raw text → Arrow token shards, streaming. One line of text (or one JSONL {"text": ...}) is one sequence:
// [CLS] pieces [SEP]. Sequences longer than max_length are cut into chunks of max_length − 2 and each chunk is
// re-wrapped in [CLS]/[SEP] (the reference's divide_into_chunks); then sequences of ≤ 11 tokens and those
// ≥ 50% [UNK] are dropped (remove_empty_sequences, remove_unknown_sequences).
//
// Output folder: shard-00000.arrow … (Arrow IPC files, one column input_ids: List<Int32>, record batches of
// at most RECORD_BATCH_ROWS sequences), token_counts.safetensors (I64 [V]: count per id over the kept
// sequences), meta.json (written last: its presence means the corpus is complete).
// Every file is written to a temp name and renamed. progress.json records the position after each shard, so
// an interrupted run, started again with the same inputs, continues from the last complete shard.

import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { TextDecoder } from 'node:util';
import { availableParallelism } from 'node:os';
import { basename, join, relative, resolve } from 'node:path';
import { createGunzip } from 'node:zlib';
import { addAbortSignal } from 'node:stream';
import { Field, Int32, List, makeData, RecordBatch, RecordBatchFileWriter, Schema, Struct } from 'apache-arrow';
import { FileFormatError, InputError, MismatchError, StoppedError } from '../src/core/errors.js';
import { readJsonObject } from '../src/core/model-dir.js';
import { encodeSafetensors, SafetensorsFile } from '../src/core/safetensors.js';
import { makeDir, removePath, writeFileAtomic } from '../src/core/out.js';
import {
  assertApart,
  assertNotInsideRecognised,
  describeRecognised,
  distinctPaths,
  markFolder,
  recognise,
  type NamedPath,
} from '../src/core/folders.js';
import { acquireFolderLock } from '../src/core/lock.js';
import type { WordPieceTokenizer } from './tokenizer.js';
import { localTokenizer, startTokenizerPool, type BatchTokenizer, type TokenizedBatch } from './tokenize-pool.js';

export const RECORD_BATCH_ROWS = 4096;
/** Sequences of at most this many tokens ([CLS]/[SEP] included) are dropped (the reference keeps lengths > 11). */
export const MIN_KEPT_LENGTH = 12;
const META_VERSION = 1;

export interface PrepareOptions {
  outDir: string;
  inputs: string[];
  /** Longest sequence, [CLS] and [SEP] included (the student's positions; 512 for bert-base). */
  maxLength: number;
  /** Sequences per shard file. */
  shardSequences: number;
  /**
   * Sequences shorter than this many tokens ([CLS]/[SEP] included) are dropped (12: the reference keeps lengths > 11).
   */
  minLength?: number;
  /** Called after each shard file is complete (its index). */
  onShardWritten?: (index: number) => void;
  /**
   * What to do with a line that is not valid UTF-8, holds NUL bytes (binary)
   * or is broken JSONL: stop, or skip and count it.
   */
  onBadLine: 'error' | 'skip';
  /** Called now and then with progress figures. */
  onProgress?: (p: PrepareProgress) => void;
  /**
   * Worker threads that tokenize (0: this thread alone). 'auto', the default: one per core, at most 8, for inputs of
   * 4 MB or more, else 0 (starting the threads would cost more than they save). The output is the same either way.
   */
  workers?: number | 'auto';
  /** Texts sent to the tokenizer at a time (at most; also at most 1 M characters). Default 2000. */
  batchTexts?: number;
  /** The paths the user named, which the output may not touch (default: `inputs`, named INPUT). */
  namedInputs?: NamedPath[];
  /** How messages name the output folder (default --out). */
  outOption?: string;
  /**
   * Asked as lines are read (a signal handler's flag): a signal named stops the preparation; the next run continues it.
   */
  stopRequested?: () => NodeJS.Signals | undefined;
  /** Hears notes for the user (an input named twice). */
  onNote?: (line: string) => void;
}

export interface PrepareProgress {
  bytesRead: number;
  totalBytes: number;
  sequences: number;
  tokens: number;
  elapsedS: number;
}

export interface ShardInfo {
  file: string;
  sequences: number;
  tokens: number;
  record_batches: number;
  /** SHA-256 of the file, checked when the reader loads it (absent in corpora prepared before it was recorded). */
  sha256?: string;
}

export interface CorpusMeta {
  format_version: number;
  tokenizer: { dir: string; source: string; vocab_size: number; vocab_hash: string; lowercase: boolean };
  max_length: number;
  min_length: number;
  shard_sequences: number;
  fingerprint: string;
  inputs: { path: string; bytes: number }[];
  lines_read: number;
  empty_lines: number;
  skipped: Skipped;
  chunked_lines: number;
  sequences: { kept: number; dropped_too_short: number; dropped_unknown: number };
  tokens: number;
  shards: ShardInfo[];
}

/** Lines skipped under --on-bad-line skip, by what was wrong with them. */
interface Skipped {
  invalid_utf8: number;
  binary: number;
  bad_json: number;
  too_long?: number;
}

interface Counters {
  lines_read: number;
  empty_lines: number;
  skipped: Skipped;
  chunked_lines: number;
  kept: number;
  dropped_too_short: number;
  dropped_unknown: number;
  tokens: number;
}

interface Progress {
  fingerprint: string;
  shards: ShardInfo[];
  /** Input file index and line number (1-based) of the last line in the last complete shard. */
  file_index: number;
  line: number;
  counters: Counters;
  token_counts: number[];
}

const INPUT_PATTERN = /\.(txt|jsonl)(\.gz)?$/;
/**
 * workers 'auto': threads only from this much input, and at most this many. Past a few threads the reading thread is
 * the limit on prose (SOTU + Moby Dick ×10: ~4.7 s of its own work against ~10 s of tokenizing on one thread); text
 * outside ASCII, which the tokenizers library tokenizes, gives more threads more to do.
 */
const AUTO_WORKERS_MIN_BYTES = 4e6;
const AUTO_WORKERS_MAX = 8;
/** The tokenizing threads that workers 'auto' starts for this many bytes of input. */
export function autoWorkers(totalBytes: number): number {
  return totalBytes >= AUTO_WORKERS_MIN_BYTES ? Math.min(availableParallelism(), AUTO_WORKERS_MAX) : 0;
}

/** A batch sent to be tokenized: this many texts or characters, whichever comes first. */
const BATCH_TEXTS = 2000;
const BATCH_CHARS = 1 << 20;

/** One input line as read: text to tokenize, empty, or bad (with what to say or count); or the end of a file. */
type LineRecord =
  | { kind: 'text'; fileIndex: number; line: number }
  | { kind: 'empty'; fileIndex: number; line: number }
  | { kind: 'bad'; fileIndex: number; line: number; skipped: keyof Skipped; message: string }
  | { kind: 'end-of-file'; fileIndex: number };

/** Lines read, checked and parsed, in order; the texts among them go to the tokenizer together. */
class LineBatch {
  readonly records: LineRecord[] = [];
  readonly texts: string[] = [];
  chars = 0;

  addLine(
    fileIndex: number,
    line: number,
    raw: Uint8Array | typeof LINE_TOO_LONG,
    isJsonl: boolean,
    decoder: TextDecoder,
  ): void {
    const bad = (skipped: keyof Skipped, message: string): void => {
      this.records.push({ kind: 'bad', fileIndex, line, skipped, message });
    };
    if (raw === LINE_TOO_LONG) {
      bad('too_long', `longer than ${MAX_LINE_BYTES / 2 ** 20} MB without a line break: not one sequence of text`);
      return;
    }
    if (raw.includes(0)) {
      bad('binary', 'a NUL byte: this looks like a binary file, not text');
      return;
    }
    let text: string;
    try {
      text = decoder.decode(raw);
    } catch {
      bad('invalid_utf8', 'not valid UTF-8');
      return;
    }
    if (isJsonl) {
      if (text.trim() === '') {
        this.records.push({ kind: 'empty', fileIndex, line });
        return;
      }
      let value: unknown;
      try {
        value = (JSON.parse(text) as { text?: unknown })?.text;
      } catch (e) {
        bad('bad_json', `not valid JSON (${(e as Error).message})`);
        return;
      }
      if (typeof value !== 'string') {
        bad('bad_json', 'no string field "text"');
        return;
      }
      text = value;
    }
    if (text.trim() === '') {
      this.records.push({ kind: 'empty', fileIndex, line });
      return;
    }
    this.records.push({ kind: 'text', fileIndex, line });
    this.texts.push(text);
    this.chars += text.length;
  }
}

/**
 * The input files, in a stable order: as given, folders walked in sorted order. A file reached twice (named twice, or
 * named and inside a named folder) is read once; `repeated` lists the names left out.
 */
export function listInputs(inputs: string[]): { files: string[]; repeated: string[] } {
  if (inputs.length === 0)
    throw new InputError('no inputs given', 'pass .txt or .jsonl files (optionally .gz), or folders holding them');
  const out: string[] = [];
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true })
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .flatMap((e) =>
        e.isDirectory() ? walk(join(dir, e.name)) : INPUT_PATTERN.test(e.name) ? [join(dir, e.name)] : [],
      );
  for (const input of inputs) {
    if (!existsSync(input)) throw new FileFormatError(input, 'no such file or folder');
    const st = statSync(input);
    if (st.isDirectory()) {
      const found = walk(input);
      if (found.length === 0)
        throw new FileFormatError(input, 'the folder holds no .txt, .jsonl, .txt.gz or .jsonl.gz file');
      out.push(...found);
      continue;
    }
    if (!INPUT_PATTERN.test(input))
      throw new FileFormatError(
        input,
        'not a .txt, .jsonl, .txt.gz or .jsonl.gz file',
        'one sequence per line in .txt, or {"text": ...} per line in .jsonl',
      );
    // A device (/dev/zero, /dev/urandom) never ends; a named pipe is read as the stream it is.
    if (!st.isFile() && !st.isFIFO()) {
      throw new FileFormatError(
        input,
        `not a regular file ` +
          `(${st.isCharacterDevice() ? 'a character device' : st.isBlockDevice() ? 'a block device' : 'a socket'})`,
        'give files of text, or a named pipe (mkfifo) that a program writes text into',
      );
    }
    out.push(input);
  }
  const { paths, repeated } = distinctPaths(out);
  return { files: paths, repeated };
}

/** The longest line read: beyond it, a line is not a sequence of text (a binary file, a dump without line breaks). */
export const MAX_LINE_BYTES = 1 << 20;
/** What rawLines gives for a line longer than MAX_LINE_BYTES (its bytes are not kept: memory stays bounded). */
const LINE_TOO_LONG = Symbol('line too long');

/**
 * Lines of a file as raw bytes (split on \n, a trailing \r removed), decompressing .gz. A line longer than
 * MAX_LINE_BYTES comes as LINE_TOO_LONG, once, and its bytes up to the next line break are dropped as they come.
 */
async function* rawLines(
  path: string,
  onBytes: (n: number) => void,
  abort: AbortSignal,
): AsyncGenerator<Uint8Array | typeof LINE_TOO_LONG> {
  // The abort signal ends a read that waits (a pipe with no writer, a slow disk) as well as one that flows.
  const file = addAbortSignal(abort, createReadStream(path));
  file.on('data', (chunk) => onBytes(chunk.length));
  const stream = path.endsWith('.gz') ? addAbortSignal(abort, file.pipe(createGunzip())) : file;
  let rest: Buffer = Buffer.alloc(0);
  let dropping = false; // inside a line too long, until its line break
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      let buf = rest.length ? Buffer.concat([rest, chunk]) : chunk;
      let start = 0;
      for (let nl = buf.indexOf(10, start); nl !== -1; nl = buf.indexOf(10, start)) {
        const end = nl > start && buf[nl - 1] === 13 ? nl - 1 : nl;
        if (dropping) dropping = false;
        else yield end - start > MAX_LINE_BYTES ? LINE_TOO_LONG : buf.subarray(start, end);
        start = nl + 1;
      }
      rest = Buffer.from(buf.subarray(start));
      if (!dropping && rest.length > MAX_LINE_BYTES) {
        yield LINE_TOO_LONG;
        dropping = true;
      }
      if (dropping) rest = Buffer.alloc(0);
      buf = rest;
    }
  } catch (e) {
    if (abort.aborted) throw e;
    throw new FileFormatError(
      path,
      `cannot read: ${(e as Error).message}`,
      path.endsWith('.gz') ? 'is the .gz file complete?' : undefined,
    );
  }
  if (rest.length && !dropping) yield rest.at(-1) === 13 ? rest.subarray(0, rest.length - 1) : rest;
}

/** The sequences one line gives: [CLS] pieces [SEP], cut into chunks of maxLength − 2 and re-wrapped. */
export function lineToSequences(pieces: ArrayLike<number>, tok: WordPieceTokenizer, maxLength: number): number[][] {
  const seq = new Array<number>(pieces.length + 2);
  seq[0] = tok.clsId;
  for (let i = 0; i < pieces.length; i++) seq[i + 1] = pieces[i]!;
  seq[pieces.length + 1] = tok.sepId;
  if (seq.length <= maxLength) return [seq];
  const out: number[][] = [];
  for (let i = 0; i < seq.length; i += maxLength - 2) {
    const sub = seq.slice(i, i + maxLength - 2);
    if (sub[0] !== tok.clsId) sub.unshift(tok.clsId);
    if (sub[sub.length - 1] !== tok.sepId) sub.push(tok.sepId);
    out.push(sub);
  }
  return out;
}

/**
 * The sequences of the shard being filled: one growing buffer of ids and one of offsets, reused from shard
 * to shard, so that memory holds no per-sequence objects (they would pile up in the old generation).
 */
class PendingShard {
  values = new Int32Array(1 << 20);
  offsets: number[] = [0];
  get count(): number {
    return this.offsets.length - 1;
  }
  get tokens(): number {
    return this.offsets[this.offsets.length - 1]!;
  }
  push(seq: number[]): void {
    const end = this.tokens;
    if (end + seq.length > this.values.length) {
      const grown = new Int32Array(Math.max(this.values.length * 2, end + seq.length));
      grown.set(this.values.subarray(0, end));
      this.values = grown;
    }
    this.values.set(seq, end);
    this.offsets.push(end + seq.length);
  }
  clear(): void {
    this.offsets = [0];
  }
}

function encodeShard(pending: PendingShard): { bytes: Uint8Array; recordBatches: number } {
  const listType = new List(new Field('item', new Int32(), false));
  const schema = new Schema([new Field('input_ids', listType, false)]);
  const batches: RecordBatch[] = [];
  for (let start = 0; start < pending.count; start += RECORD_BATCH_ROWS) {
    const n = Math.min(RECORD_BATCH_ROWS, pending.count - start);
    const base = pending.offsets[start]!;
    const offsets = Int32Array.from({ length: n + 1 }, (_, i) => pending.offsets[start + i]! - base);
    const values = pending.values.slice(base, base + offsets[n]!);
    const child = makeData({ type: new Int32(), length: values.length, data: values });
    const list = makeData({ type: listType, length: n, nullCount: 0, valueOffsets: offsets, child });
    batches.push(
      new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: n, nullCount: 0, children: [list] })),
    );
  }
  return { bytes: RecordBatchFileWriter.writeAll(batches).toUint8Array(true), recordBatches: batches.length };
}

export function shardName(i: number): string {
  return `shard-${String(i).padStart(5, '0')}.arrow`;
}

function fingerprintOf(tok: WordPieceTokenizer, files: string[], opts: PrepareOptions): string {
  const h = createHash('sha256');
  h.update(
    JSON.stringify({
      v: META_VERSION,
      vocab: tok.vocabHash,
      maxLength: opts.maxLength,
      shardSequences: opts.shardSequences,
      onBadLine: opts.onBadLine,
      minLength: opts.minLength,
      inputs: files.map((f) => {
        const s = statSync(f);
        return [resolve(f), s.size, s.mtimeMs];
      }),
    }),
  );
  return h.digest('hex');
}

export function readCorpusMeta(dir: string): CorpusMeta {
  const path = join(dir, 'meta.json');
  if (!existsSync(path)) {
    throw new FileFormatError(
      path,
      'missing: the corpus is not prepared (or its preparation did not finish)',
      `run: distill prepare --tokenizer DIR --out ${dir} INPUT...`,
    );
  }
  const meta = readJsonObject(path) as unknown as CorpusMeta;
  if (meta.format_version !== META_VERSION)
    throw new FileFormatError(
      path,
      `format_version ${meta.format_version}, this distill reads ${META_VERSION}`,
      'prepare the corpus again',
    );
  return meta;
}

/** Token counts of a prepared corpus (for the masking weights). */
export function readTokenCounts(dir: string): Float64Array {
  const counts = SafetensorsFile.read(join(dir, 'token_counts.safetensors')).get('counts').data as BigInt64Array;
  return Float64Array.from(counts, (x) => Number(x));
}

/**
 * The output folder of a preparation, checked before any work: apart from what it reads (assertApart), not inside a
 * model, run or corpus folder, and new, empty, or a corpus distill prepares there (complete: its meta.json is
 * returned; interrupted: its progress, when from the same inputs and options). Anything else there is refused.
 */
/**
 * Check, before any work, that a corpus may be prepared in `out`: apart from what the preparation reads, not inside a
 * model, run or corpus folder, and new, empty, or a corpus (complete or not). `option` names it in messages.
 */
export function checkCorpusFolder(out: string, named: NamedPath[], option = '--out'): void {
  const outPath: NamedPath = { path: out, option };
  assertApart(outPath, named);
  assertNotInsideRecognised(outPath);
  const r = recognise(out);
  if (r.state === 'file')
    throw new InputError(
      `${option} ${out} is a file, where the corpus folder goes`,
      `give ${option} a new or empty folder`,
    );
  if (r.state !== 'missing' && r.state !== 'empty' && !(r.state === 'distill' && r.kind === 'corpus')) {
    throw new InputError(
      `${option} ${out} already exists and holds ${describeRecognised(r)}, not a corpus`,
      `give ${option} a new or empty folder: distill never writes into a folder it did not make`,
    );
  }
}

function openOutFolder(
  out: string,
  tok: WordPieceTokenizer,
  fingerprint: string,
  named: NamedPath[],
  option: string,
): { complete?: CorpusMeta; progress?: Progress } {
  checkCorpusFolder(out, named, option);
  const metaPath = join(out, 'meta.json');
  if (existsSync(metaPath)) {
    const meta = readJsonObject(metaPath) as unknown as CorpusMeta;
    if (meta.tokenizer?.vocab_hash !== tok.vocabHash) {
      throw new MismatchError(
        `${metaPath}: the corpus there was prepared with another tokenizer (vocabulary hash ` +
          `${meta.tokenizer?.vocab_hash?.slice(0, 12)}…, ` +
          `${tok.info.source} has ${tok.vocabHash.slice(0, 12)}…)`,
        'use a new --out folder for this tokenizer',
      );
    }
    if (meta.fingerprint === fingerprint) return { complete: meta };
    throw new InputError(
      `${out} already holds a prepared corpus from other inputs or options`,
      'use a new --out folder',
    );
  }
  const progressPath = join(out, 'progress.json');
  if (!existsSync(progressPath)) return {};
  const p = readJsonObject(progressPath) as unknown as Progress;
  return p.fingerprint === fingerprint && p.shards.every((s) => existsSync(join(out, s.file))) ? { progress: p } : {};
}

/** Prepare a corpus. Returns its meta.json contents. */
export async function prepareCorpus(tok: WordPieceTokenizer, opts: PrepareOptions): Promise<CorpusMeta> {
  if (!Number.isInteger(opts.maxLength) || opts.maxLength < 3) {
    throw new InputError(`--max-length ${opts.maxLength}: must be at least 3 ([CLS], one token, [SEP])`);
  }
  const { files, repeated } = listInputs(opts.inputs);
  if (repeated.length > 0)
    opts.onNote?.(`note: ${repeated.join(', ')}: named more than once (or inside a folder named too), read once`);
  const minLength = opts.minLength ?? MIN_KEPT_LENGTH;
  const fingerprint = fingerprintOf(tok, files, { ...opts, minLength });
  const out = opts.outDir;
  const named = opts.namedInputs ?? opts.inputs.map((path) => ({ path, option: 'INPUT' }));
  const opened = openOutFolder(
    out,
    tok,
    fingerprint,
    [...named, { path: tok.dir, option: '--tokenizer' }],
    opts.outOption ?? '--out',
  );
  if (opened.complete) return opened.complete;
  makeDir(out);
  const release = acquireFolderLock(out, 'prepare');
  try {
    markFolder(out, 'corpus', false);
    return await prepareInto(tok, opts, files, fingerprint, minLength, opened.progress);
  } finally {
    release();
  }
}

/** The preparation itself, into a folder claimed for it, from the start or from `progress`. */
async function prepareInto(
  tok: WordPieceTokenizer,
  opts: PrepareOptions,
  files: string[],
  fingerprint: string,
  minLength: number,
  progress: Progress | undefined,
): Promise<CorpusMeta> {
  const out = opts.outDir;
  // Leftovers of an interrupted write: temp files are never complete.
  // Shards past the recorded progress (or from other inputs) are stale.
  const keep = new Set((progress?.shards ?? []).map((s) => s.file));
  for (const f of readdirSync(out))
    if (/\.tmp-\d+$/.test(f) || (/^shard-\d{5}\.arrow$/.test(f) && !keep.has(f))) removePath(join(out, f));
  const totalBytes = files.reduce((n, f) => n + statSync(f).size, 0);
  const workerCount = opts.workers === undefined || opts.workers === 'auto' ? autoWorkers(totalBytes) : opts.workers;
  const tokenizer = workerCount > 0 ? await startTokenizerPool(tok.dir, workerCount) : localTokenizer(tok);
  const run = new Preparation(tok, opts, files, fingerprint, minLength, progress, tokenizer, totalBytes);
  try {
    await run.readAll();
  } finally {
    await tokenizer.close();
  }
  return run.finish();
}

/**
 * One preparation's state as lines become shards. Lines are read, checked and parsed here, tokenized in batches (on
 * worker threads when there are several), and their sequences taken in the order read: whatever the threads, the
 * same shards, counters and progress.json.
 */
class Preparation {
  private readonly out: string;
  private readonly counters: Counters;
  private readonly counts: Float64Array;
  private readonly shards: ShardInfo[];
  private readonly pending = new PendingShard();
  private readonly inFlight: { batch: LineBatch; ids: Promise<TokenizedBatch> }[] = [];
  private batch = new LineBatch();
  private position: { file_index: number; line: number };
  private bytesRead = 0;
  private readonly started = Date.now();
  private lastReport = 0;

  constructor(
    private readonly tok: WordPieceTokenizer,
    private readonly opts: PrepareOptions,
    private readonly files: string[],
    private readonly fingerprint: string,
    private readonly minLength: number,
    private readonly progress: Progress | undefined,
    private readonly tokenizer: BatchTokenizer,
    private readonly totalBytes: number,
  ) {
    this.out = opts.outDir;
    this.counters = progress
      ? structuredClone(progress.counters)
      : {
          lines_read: 0,
          empty_lines: 0,
          skipped: { invalid_utf8: 0, binary: 0, bad_json: 0, too_long: 0 },
          chunked_lines: 0,
          kept: 0,
          dropped_too_short: 0,
          dropped_unknown: 0,
          tokens: 0,
        };
    this.counts = progress ? Float64Array.from(progress.token_counts) : new Float64Array(tok.vocabSize);
    this.shards = progress ? [...progress.shards] : [];
    this.position = { file_index: progress?.file_index ?? 0, line: progress?.line ?? 0 };
  }

  /**
   * Every input's lines, from where an interrupted preparation stopped. A stop asked for (a signal) is looked for as
   * lines come, and every 200 ms while a read waits (a pipe with no writer yet,
   * whose open blocks, does not hold it up).
   */
  async readAll(): Promise<void> {
    const { opts } = this;
    const resumeFile = this.progress?.file_index ?? 0;
    const resumeLine = this.progress?.line ?? 0;
    const decoder = new TextDecoder('utf-8', { fatal: true });
    const abort = new AbortController();
    const poll = setInterval(() => {
      if (opts.stopRequested?.()) abort.abort();
    }, 200);
    const stopping = new Promise<never>((_, reject) =>
      abort.signal.addEventListener('abort', () => reject(new Error('stopped')), { once: true }),
    );
    stopping.catch(() => undefined); // settled when the loop races it, or never
    try {
      for (let fi = 0; fi < this.files.length; fi++) {
        const path = this.files[fi]!;
        if (fi < resumeFile) {
          this.bytesRead += statSync(path).size;
          continue;
        }
        const isJsonl = /\.jsonl(\.gz)?$/.test(path);
        const lines = rawLines(
          path,
          (n) => {
            this.bytesRead += n;
          },
          abort.signal,
        );
        let lineNo = 0;
        for (
          let next = await Promise.race([lines.next(), stopping]);
          !next.done;
          next = await Promise.race([lines.next(), stopping])
        ) {
          const signal = opts.stopRequested?.();
          if (signal) throw stopped(signal, this.out, this.shards);
          lineNo++;
          if (fi === resumeFile && lineNo <= resumeLine) continue; // in a shard written before the interruption
          this.batch.addLine(fi, lineNo, next.value, isJsonl, decoder);
          if (this.batch.texts.length >= (opts.batchTexts ?? BATCH_TEXTS) || this.batch.chars >= BATCH_CHARS)
            this.send();
          while (this.inFlight.length > 2 * this.tokenizer.workers) await this.takeOldest();
        }
        this.batch.records.push({ kind: 'end-of-file', fileIndex: fi });
      }
      this.send();
      while (this.inFlight.length > 0) await this.takeOldest();
    } catch (e) {
      const signal = opts.stopRequested?.();
      if (abort.signal.aborted && signal) throw stopped(signal, this.out, this.shards);
      throw e;
    } finally {
      clearInterval(poll);
    }
  }

  /** The lines read so far go to the tokenizer together. */
  private send(): void {
    if (this.batch.records.length === 0) return;
    const ids = this.tokenizer.tokenize(this.batch.texts);
    ids.catch(() => {}); // a worker's failure is thrown when this batch is taken, not as an unhandled rejection before
    this.inFlight.push({ batch: this.batch, ids });
    this.batch = new LineBatch();
  }

  /** The oldest batch's lines, in order: counted, and their sequences kept or dropped, as one loop would. */
  private async takeOldest(): Promise<void> {
    const { opts, counters } = this;
    const { batch: done, ids: tokenized } = this.inFlight.shift()!;
    const { ids, offsets } = await tokenized;
    let textIndex = 0;
    for (const rec of done.records) {
      if (rec.kind === 'end-of-file') {
        this.position = { file_index: rec.fileIndex + 1, line: 0 };
        continue;
      }
      counters.lines_read++;
      if (rec.kind === 'bad') {
        if (opts.onBadLine === 'error') {
          throw new FileFormatError(
            `${this.files[rec.fileIndex]}:${rec.line}`,
            rec.message,
            'fix or remove the line, or pass --on-bad-line skip to skip such lines (they are counted in meta.json)',
          );
        }
        counters.skipped[rec.skipped] = (counters.skipped[rec.skipped] ?? 0) + 1;
        continue;
      }
      if (rec.kind === 'empty') {
        counters.empty_lines++;
        continue;
      }
      const t = textIndex++;
      this.keep(ids.subarray(offsets[t]!, offsets[t + 1]!));
      this.position = { file_index: rec.fileIndex, line: rec.line };
      if (this.pending.count >= opts.shardSequences) this.flushShard();
      if (Date.now() - this.lastReport > 250) {
        this.lastReport = Date.now();
        this.report();
      }
    }
  }

  /** One line's sequences: cut to max_length, the short and the mostly-[UNK] dropped, the rest counted and kept. */
  private keep(pieces: Int32Array): void {
    const { counters, tok } = this;
    const sequences = lineToSequences(pieces, tok, this.opts.maxLength);
    if (sequences.length > 1) counters.chunked_lines++;
    for (const seq of sequences) {
      if (seq.length < this.minLength) {
        counters.dropped_too_short++;
        continue;
      }
      let unk = 0;
      for (const id of seq) if (id === tok.unkId) unk++;
      if (unk / seq.length >= 0.5) {
        counters.dropped_unknown++;
        continue;
      }
      for (const id of seq) this.counts[id]!++;
      counters.kept++;
      counters.tokens += seq.length;
      this.pending.push(seq);
    }
  }

  /** The pending sequences as the next shard file, then progress.json (the point a later run continues from). */
  private flushShard(): void {
    const { pending, shards } = this;
    if (pending.count === 0) return;
    const file = shardName(shards.length);
    const { bytes, recordBatches } = encodeShard(pending);
    writeFileAtomic(join(this.out, file), bytes);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    shards.push({ file, sequences: pending.count, tokens: pending.tokens, record_batches: recordBatches, sha256 });
    pending.clear();
    const p: Progress = {
      fingerprint: this.fingerprint,
      shards,
      ...this.position,
      counters: this.counters,
      token_counts: Array.from(this.counts),
    };
    writeFileAtomic(join(this.out, 'progress.json'), JSON.stringify(p));
    this.opts.onShardWritten?.(shards.length - 1);
  }

  private report(): void {
    const { bytesRead, totalBytes, counters } = this;
    this.opts.onProgress?.({
      bytesRead,
      totalBytes,
      sequences: counters.kept,
      tokens: counters.tokens,
      elapsedS: (Date.now() - this.started) / 1000,
    });
  }

  /**
   * The last shard, token_counts.safetensors,
   * then meta.json (its presence means the corpus is complete) and the marker.
   */
  finish(): CorpusMeta {
    const { counters, counts, out, files, opts, tok } = this;
    this.flushShard();
    this.report();
    if (counters.kept === 0) {
      throw new InputError(
        `no sequences kept from ${files.length} input file(s): ${counters.lines_read} lines read, ` +
          `${counters.empty_lines} empty, ` +
          (`${counters.dropped_too_short} too short (< ${this.minLength} tokens), ` +
            `${counters.dropped_unknown} mostly [UNK]`),
        'give more text: each line is one sequence and must have at least 10 word pieces',
      );
    }
    writeFileAtomic(
      join(out, 'token_counts.safetensors'),
      encodeSafetensors({
        counts: { data: BigInt64Array.from(counts, (c) => BigInt(c)), shape: [counts.length], dtype: 'I64' },
      }),
    );
    const meta: CorpusMeta = {
      format_version: META_VERSION,
      tokenizer: {
        dir: tok.dir,
        source: basename(tok.info.source),
        vocab_size: tok.vocabSize,
        vocab_hash: tok.vocabHash,
        lowercase: tok.info.lowercase,
      },
      max_length: opts.maxLength,
      min_length: this.minLength,
      shard_sequences: opts.shardSequences,
      fingerprint: this.fingerprint,
      inputs: files.map((f) => ({ path: relative(out, resolve(f)) || f, bytes: statSync(f).size })),
      lines_read: counters.lines_read,
      empty_lines: counters.empty_lines,
      skipped: counters.skipped,
      chunked_lines: counters.chunked_lines,
      sequences: {
        kept: counters.kept,
        dropped_too_short: counters.dropped_too_short,
        dropped_unknown: counters.dropped_unknown,
      },
      tokens: counters.tokens,
      shards: this.shards,
    };
    writeFileAtomic(join(out, 'meta.json'), JSON.stringify(meta, null, 1) + '\n');
    removePath(join(out, 'progress.json'));
    markFolder(out, 'corpus', ['meta.json', 'token_counts.safetensors']);
    return meta;
  }
}

/** The error that ends a preparation stopped by a signal: what is kept, and how to go on. */
function stopped(signal: NodeJS.Signals, out: string, shards: ShardInfo[]): StoppedError {
  const kept = shards.reduce((n, s) => n + s.sequences, 0);
  return new StoppedError(
    signal,
    `stopped by ${signal} while preparing ${out}: ${shards.length} complete ` +
      `shard${shards.length === 1 ? '' : 's'} (${kept} sequences) kept`,
    'run the same command again: it continues from the last complete shard',
  );
}
