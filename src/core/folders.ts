// What distill may write where. A user's files are never touched by an output:
//  - an output is never, contains, or lies inside a path the same command reads (assertApart), nor lies inside a
//    model, run or corpus folder (assertNotInsideRecognised);
//  - every folder distill makes carries a marker, distill.json, that says what it is (a run, a corpus, a student,
//    an export, a teacher from make-teacher, probe tasks, a checkpoint) and, once complete, the size and SHA-256 of
//    each of its files, checked when the folder is read (verifyFolder);
//  - an existing output is replaced only with --force, and only when distill made it for that same command: it is
//    then moved aside (DIR.old-<time>), never deleted. A teacher, a corpus, or a folder distill does not know is
//    refused, and the hint never offers --force for it;
//  - a folder output is written under DIR.tmp-PID and renamed into place when complete (stageOutputFolder).

import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, realpathSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { FileFormatError, InputError } from './errors.js';
import {
  isStaleTemp,
  makeDir,
  removePath,
  renamePath,
  tempNameFor,
  trackTemp,
  untrackTemp,
  writeFileAtomic,
} from './out.js';

export const MARKER = 'distill.json';

/** The kinds of folder distill makes. */
export type MadeKind = 'run' | 'corpus' | 'student' | 'export' | 'teacher' | 'tasks' | 'checkpoint';

const WHAT: Record<MadeKind, string> = {
  run: 'a training run',
  corpus: 'a prepared corpus',
  student: 'a student made by init-student',
  export: 'a model made by export',
  teacher: 'a teacher made by make-teacher',
  tasks: 'probe tasks made by probe-data',
  checkpoint: 'a checkpoint',
};

interface FileDigest {
  bytes: number;
  sha256: string;
}

export interface Marker {
  made_by: 'distill';
  kind: MadeKind;
  /** Each file of the folder (relative path), once complete: checked when the folder is read. */
  files?: Record<string, FileDigest>;
}

/** A path a command reads or writes, and the option that named it (for messages). */
export interface NamedPath {
  path: string;
  option: string;
}

export function readMarker(dir: string): Marker | undefined {
  try {
    const m = JSON.parse(readFileSync(join(dir, MARKER), 'utf8')) as Marker;
    return m && m.made_by === 'distill' && typeof m.kind === 'string' && m.kind in WHAT ? m : undefined;
  } catch {
    return undefined;
  }
}

/** Size and SHA-256 of a file, read in pieces (a shard or a model can be gigabytes). */
export function digestFile(path: string): FileDigest {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(1 << 22);
  let bytes = 0;
  try {
    for (let n = readSync(fd, buf, 0, buf.length, null); n > 0; n = readSync(fd, buf, 0, buf.length, null)) {
      hash.update(buf.subarray(0, n));
      bytes += n;
    }
  } finally {
    closeSync(fd);
  }
  return { bytes, sha256: hash.digest('hex') };
}

/** Every file under `dir` (relative paths, sorted), the marker and temps left out. */
function filesUnder(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true })
    .filter((e) => e.name !== MARKER && !/\.tmp-\d+$/.test(e.name))
    .flatMap((e) => (e.isDirectory() ? filesUnder(dir, join(prefix, e.name)) : [join(prefix, e.name)]))
    .sort();
}

/**
 * Write the marker of a folder distill made. `complete`: with the size and SHA-256 of each file in it (true), or of
 * the files listed; false: while it is being written.
 */
export function markFolder(dir: string, kind: MadeKind, complete: boolean | string[]): void {
  const listed = complete === true ? filesUnder(dir) : complete === false ? undefined : complete;
  const files = listed && Object.fromEntries(listed.map((f) => [f, digestFile(join(dir, f))]));
  // No time in it: the same inputs give the same bytes (a corpus, an export), marker included.
  const marker: Marker = { made_by: 'distill', kind, ...(files ? { files } : {}) };
  writeFileAtomic(join(dir, MARKER), JSON.stringify(marker, null, 1) + '\n');
}

/**
 * Check each file the marker of `dir` lists against its recorded size and SHA-256 (a folder without a marker, or
 * one still being written, is not checked). Throws a FileFormatError naming the first file that differs.
 */
export function verifyFolder(dir: string): void {
  const marker = readMarker(dir);
  if (!marker?.files) return;
  // Once a process: the same folder is often read by two layers (a command, then the teacher's loader).
  const key = `${canonical(dir)}:${statSync(join(dir, MARKER)).mtimeMs}`;
  if (verified.has(key)) return;
  for (const [file, want] of Object.entries(marker.files)) {
    const path = join(dir, file);
    if (!existsSync(path))
      throw new FileFormatError(path, `missing (${join(dir, MARKER)} lists it)`, 'the folder is incomplete');
    const got = digestFile(path);
    if (got.bytes !== want.bytes || got.sha256 !== want.sha256) {
      throw new FileFormatError(
        path,
        `its contents changed after distill wrote it: ${got.bytes} bytes and SHA-256 ${got.sha256.slice(0, 12)}…, ` +
          `${join(dir, MARKER)} records ${want.bytes} bytes and ${want.sha256.slice(0, 12)}…`,
        'the file is damaged (a disk, a copy, a hand edit)',
      );
    }
  }
  verified.add(key);
}

const verified = new Set<string>();

// --- Recognising folders. ---

/** What a path holds, as distill sees it. */
export type Recognised =
  { state: 'missing' | 'file' | 'empty' | 'model' | 'tasks' | 'other' } | { state: 'distill'; kind: MadeKind };

const MODEL_FILES = [
  'model.onnx',
  'model-hidden.onnx',
  join('onnx', 'model.onnx'),
  'model.safetensors',
  'pytorch_model.bin',
  'tokenizer.json',
  'vocab.txt',
];

function jsonKeys(path: string): string[] {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? Object.keys(v) : [];
  } catch {
    return [];
  }
}

/** A folder distill made before it wrote markers: a run, a checkpoint or a corpus, by their own files. */
function unmarkedKind(dir: string, names: string[]): MadeKind | undefined {
  const has = (f: string): boolean => names.includes(f);
  if (has('trainer_state.json')) return 'checkpoint';
  const checkpoints = join(dir, 'checkpoints');
  if (
    has('metrics.jsonl') ||
    (has('checkpoints') &&
      existsSync(checkpoints) &&
      statSync(checkpoints).isDirectory() &&
      readdirSync(checkpoints).some((f) => /^step-\d+/.test(f)))
  )
    return 'run';
  if (has('progress.json') || names.some((f) => /^shard-\d{5}\.arrow$/.test(f))) return 'corpus';
  if (has('meta.json') && jsonKeys(join(dir, 'meta.json')).includes('shards')) return 'corpus';
  return undefined;
}

export function recognise(path: string): Recognised {
  let names: string[];
  try {
    if (!statSync(path).isDirectory()) return { state: 'file' };
    names = readdirSync(path);
  } catch {
    return { state: existsSync(path) ? 'other' : 'missing' };
  }
  if (names.length === 0) return { state: 'empty' };
  const marker = readMarker(path);
  if (marker) return { state: 'distill', kind: marker.kind };
  const kind = unmarkedKind(path, names);
  if (kind) return { state: 'distill', kind };
  // A model's config.json (transformers' keys;
  // a run config beside a project's files is not one) and its weights or tokenizer.
  const modelKeys = names.includes('config.json') ? jsonKeys(join(path, 'config.json')) : [];
  if (
    ['model_type', 'architectures', 'vocab_size'].some((k) => modelKeys.includes(k)) &&
    MODEL_FILES.some((f) => existsSync(join(path, f)))
  ) {
    return { state: 'model' };
  }
  if (names.includes('train.tsv') || names.includes('dev.tsv')) return { state: 'tasks' };
  return { state: 'other' };
}

/** "a training run", "a model folder (config.json and its weights)", ... */
export function describeRecognised(r: Recognised): string {
  switch (r.state) {
    case 'distill':
      return WHAT[r.kind];
    case 'model':
      return 'a model folder (config.json and its weights or tokenizer)';
    case 'tasks':
      return 'a probe task folder (train.tsv, dev.tsv)';
    case 'file':
      return 'a file';
    case 'empty':
      return 'an empty folder';
    case 'missing':
      return 'nothing';
    case 'other':
      return 'files distill did not write';
  }
}

// --- Outputs apart from inputs. ---

/** The real path of `path`: symbolic links resolved on the part that exists. */
function canonical(path: string): string {
  const abs = resolve(path);
  let head = abs;
  const tail: string[] = [];
  while (!existsSync(head) && dirname(head) !== head) {
    tail.unshift(basename(head));
    head = dirname(head);
  }
  try {
    return join(realpathSync(head), ...tail);
  } catch {
    return abs;
  }
}

/** Whether two paths name the same file or folder (symbolic links followed). */
export function samePath(a: string, b: string): boolean {
  return canonical(a) === canonical(b);
}

function isInside(inner: string, outer: string): boolean {
  const rel = relative(outer, inner);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

/**
 * An output that is, contains, or lies inside a path the same command reads is refused before any work, naming both.
 */
export function assertApart(output: NamedPath, inputs: NamedPath[]): void {
  const out = canonical(output.path);
  for (const input of inputs) {
    const inp = canonical(input.path);
    const how =
      out === inp
        ? 'is also given as'
        : isInside(out, inp)
          ? `lies inside ${input.path}, given as`
          : isInside(inp, out)
            ? `contains ${input.path}, given as`
            : undefined;
    if (!how) continue;
    throw new InputError(
      `${output.option} ${output.path} ${how} ${input.option}: an output never touches what the same command reads`,
      `choose an ${output.option} outside ${input.path}`,
    );
  }
}

/**
 * An output inside a model, run, corpus or task folder (made by distill or not) is refused: it is not ours to change.
 */
export function assertNotInsideRecognised(output: NamedPath): void {
  const out = canonical(output.path);
  for (let dir = dirname(out); dirname(dir) !== dir; dir = dirname(dir)) {
    const r = recognise(dir);
    if (r.state === 'distill' || r.state === 'model' || r.state === 'tasks') {
      throw new InputError(
        `${output.option} ${output.path} lies inside ${dir}, ${describeRecognised(r)}: ` +
          'distill never writes into such a folder',
        `choose an ${output.option} outside ${dir}`,
      );
    }
  }
}

// --- Claiming an output folder. ---

/**
 * Check, before any work, that `out` may receive a new folder of `kind`: apart from the inputs, not inside a
 * recognised folder, and missing, empty, or (with --force) a folder distill made of the same kind. Returns whether
 * an old folder is there to move aside.
 */
export function checkOutputFolder(out: NamedPath, kind: MadeKind, force: boolean, inputs: NamedPath[]): boolean {
  assertApart(out, inputs);
  assertNotInsideRecognised(out);
  const r = recognise(out.path);
  const named = `${out.path} (given as ${out.option})`;
  switch (r.state) {
    case 'missing':
    case 'empty':
      return false;
    case 'file':
      throw new InputError(`${named} is a file, where a folder is written`, `give ${out.option} a new or empty folder`);
    case 'distill':
      if (r.kind !== kind) {
        throw new InputError(
          `${named} holds ${WHAT[r.kind]}, not ${WHAT[kind]}`,
          `choose a new or empty folder for ${out.option}: distill replaces only ${WHAT[kind]} there`,
        );
      }
      if (force) return true;
      throw new InputError(
        `${named} already holds ${WHAT[kind]}`,
        `choose another ${out.option}, or pass --force to move it ` +
          `aside to ${basename(out.path)}.old-<time> (never deleted)`,
      );
    default:
      throw new InputError(
        `${named} already exists and holds ${describeRecognised(r)}`,
        `choose a new or empty folder for ${out.option}: distill never moves or overwrites a folder it did not make`,
      );
  }
}

/** Move a folder aside (never deleted): DIR → DIR.old-<time>. Returns where it went. */
export function moveAside(dir: string): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  let target = join(dirname(dir), `${basename(dir)}.old-${stamp}`);
  for (let i = 1; existsSync(target); i++) target = join(dirname(dir), `${basename(dir)}.old-${stamp}-${i}`);
  renamePath(dir, target);
  return target;
}

/** Temps of `final` left by processes that are gone (kill -9, a power cut): never complete, so removed. */
function removeStaleTemps(final: string): void {
  const parent = dirname(final);
  if (!existsSync(parent)) return;
  for (const f of readdirSync(parent)) {
    if (f.startsWith(`${basename(final)}.tmp-`) && isStaleTemp(f)) removePath(join(parent, f));
  }
}

/** A new output folder being written in DIR.tmp-PID: published into place when complete, or abandoned. */
export interface StagedFolder {
  /** Where to write: the temp folder. */
  readonly dir: string;
  /** Mark the folder (each file's size and SHA-256) and rename it into place; returns where an old one went. */
  publish(): { moved_aside?: string };
  /** Remove the temp (after a failure): what was at the output is as it was. */
  abandon(): void;
}

/**
 * Begin a new output folder of `kind`: checked first (checkOutputFolder), written in DIR.tmp-PID; an old folder of the
 * same kind (--force) is moved aside only when the new one is published. A signal meanwhile removes the temp.
 */
export function stageOutputFolder(out: NamedPath, kind: MadeKind, force: boolean, inputs: NamedPath[]): StagedFolder {
  const replace = checkOutputFolder(out, kind, force, inputs);
  const final = resolve(out.path);
  makeDir(dirname(final));
  removeStaleTemps(final);
  const tmp = tempNameFor(final);
  removePath(tmp);
  trackTemp(tmp);
  try {
    makeDir(tmp);
  } catch (e) {
    untrackTemp(tmp);
    throw e;
  }
  const abandon = (): void => {
    removePath(tmp);
    untrackTemp(tmp);
  };
  return {
    dir: tmp,
    abandon,
    publish: () => {
      let moved: string | undefined;
      try {
        markFolder(tmp, kind, true);
        if (replace) moved = moveAside(final);
        else if (existsSync(final)) removePath(final); // an empty folder
        renamePath(tmp, final);
      } catch (e) {
        if (moved && !existsSync(final)) renamePath(moved, final);
        abandon();
        throw e;
      }
      untrackTemp(tmp);
      return moved ? { moved_aside: moved } : {};
    },
  };
}

/** A new output folder of `kind`, written by `write` (see stageOutputFolder). */
export async function writeOutputFolder<T>(
  out: NamedPath,
  kind: MadeKind,
  force: boolean,
  inputs: NamedPath[],
  write: (dir: string) => T | Promise<T>,
): Promise<T & { moved_aside?: string }> {
  const staged = stageOutputFolder(out, kind, force, inputs);
  let result: T;
  try {
    result = await write(staged.dir);
  } catch (e) {
    staged.abandon();
    throw e;
  }
  return { ...result, ...staged.publish() };
}

// --- Claiming an output file. ---

/**
 * Check, before any work, that `out` may receive a file: apart from the inputs, not inside a recognised folder
 * (unless `insideOwn`: the command's own place for it, such as RUN/losses.svg), not a folder; an existing file is
 * replaced only with --force, and only when `madeByDistill` says distill wrote it.
 */
export function checkOutputFile(
  out: NamedPath,
  force: boolean,
  inputs: NamedPath[],
  madeByDistill: (path: string) => boolean,
  insideOwn = false,
): void {
  if (!insideOwn) {
    assertApart(out, inputs);
    assertNotInsideRecognised(out);
  }
  if (!existsSync(out.path)) return;
  if (statSync(out.path).isDirectory()) {
    throw new InputError(
      `${out.option} ${out.path} is a folder, where a file is written`,
      `give ${out.option} a file name`,
    );
  }
  if (!madeByDistill(out.path)) {
    throw new InputError(
      `${out.option} ${out.path} exists and distill did not write it`,
      `choose another ${out.option}: distill replaces only a file it wrote`,
    );
  }
  if (!force && !insideOwn) {
    throw new InputError(`${out.option} ${out.path} exists`, 'pass --force to replace it, or choose another file');
  }
}

/**
 * Paths named more than once (the same file or folder, however written) are kept once; `repeated` lists the names
 * left out, for the command to say so.
 */
export function distinctPaths(paths: string[]): { paths: string[]; repeated: string[] } {
  const seen = new Set<string>();
  const kept: string[] = [];
  const repeated: string[] = [];
  for (const p of paths) {
    const key = canonical(p);
    if (seen.has(key)) repeated.push(p);
    else {
      seen.add(key);
      kept.push(p);
    }
  }
  return { paths: kept, repeated };
}
