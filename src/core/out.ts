// The one place that writes files. Every file and folder distill makes (checkpoints, shards, exports, reports,
// plots, metrics) is written through these functions, so that
//  - an OS error (disk full, read-only, no permission, a file where a folder should be, too many open files)
//    becomes an OutputError that names the path, says what happened and what to do (exit 1, never a stack trace);
//  - nothing is left half-written: a file is written to PATH.tmp-PID and renamed when complete, a temp that fails
//    is removed, and the temps in progress are removed when a signal ends the process (removeTempsInProgress);
//  - the tests can make any write fail the way a real disk does, without a mount (DISTILL_FAULT_WRITE, below).

import {
  appendFileSync,
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { DistillError } from './errors.js';

/** A write that the operating system refused. */
export class OutputError extends DistillError {
  readonly path: string;
  readonly code: string;
  /** What to do about the disk or the path, without what to run then (a command may say how it goes on). */
  readonly fix: string;
  constructor(path: string, code: string, message: string, fix: string, then = 'then run the command again') {
    super(message, then ? `${fix}, ${then}` : fix);
    this.path = path;
    this.code = code;
    this.fix = fix;
  }
}

/** The errno error of a failed fs call, if `e` is one. */
export function osErrorOf(e: unknown): NodeJS.ErrnoException | undefined {
  const err = e as NodeJS.ErrnoException | null;
  return err instanceof Error && typeof err.code === 'string' && /^E[A-Z0-9]+$/.test(err.code) ? err : undefined;
}

function megabytes(bytes: number): string {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.ceil(bytes / 1e3))} kB`;
}

/** The nearest existing ancestor of `path` that is a file (the cause of ENOTDIR), if any. */
function fileInTheWay(path: string): string | undefined {
  for (let p = path; ; p = dirname(p)) {
    try {
      if (!statSync(p).isDirectory()) return p;
    } catch {
      // missing or unreadable: look further up
    }
    if (dirname(p) === p) return undefined;
  }
}

/**
 * What an OS error means for the user, in one message and one hint. `doing` says what was being done ("writing",
 * "creating the folder", "reading"); `bytes`, what a write needed (said with ENOSPC).
 */
export function describeOsError(e: NodeJS.ErrnoException, path: string, doing: string, bytes?: number): OutputError {
  const code = e.code ?? 'EIO';
  const where = dirname(path);
  const needed = bytes !== undefined ? ` (the write needed ${megabytes(bytes)})` : '';
  switch (code) {
    case 'ENOSPC':
      return new OutputError(
        path,
        code,
        `${path}: no space left on the disk while ${doing}${needed}`,
        `free space on that disk (df -h ${where} shows what is left) or write to another disk`,
      );
    case 'EDQUOT':
      return new OutputError(
        path,
        code,
        `${path}: the disk quota is exceeded while ${doing}${needed}`,
        'free space within your quota (quota -s) or write to another disk',
      );
    case 'EROFS':
      return new OutputError(
        path,
        code,
        `${path}: the file system is read-only (${doing})`,
        'choose an output on a writable disk',
      );
    case 'EACCES':
    case 'EPERM':
      return new OutputError(
        path,
        code,
        `${path}: permission denied (${doing})`,
        `choose a place you may write to, or change the permissions (ls -ld ${where})`,
      );
    case 'EEXIST':
    case 'ENOTDIR': {
      // mkdir of a path that is a file gives EEXIST; a path through a file, ENOTDIR.
      if (code === 'EEXIST' && doing !== 'creating the folder')
        return new OutputError(path, code, `${path}: already exists (${doing})`, 'choose another path');
      const file = fileInTheWay(path);
      const what = file === path ? 'is a file, where' : file ? `${file} is a file, where` : 'a file stands where';
      return new OutputError(
        path,
        code,
        `${path}: ${what} a folder is needed (${doing})`,
        'choose another path, or move that file away',
      );
    }
    case 'EISDIR':
      return new OutputError(
        path,
        code,
        `${path}: is a folder, where a file is expected (${doing})`,
        'name a file, not a folder',
      );
    case 'EMFILE':
    case 'ENFILE':
      return new OutputError(
        path,
        code,
        `${path}: too many open files (${doing})`,
        'raise the limit of open files (ulimit -n 4096) or close other programs',
      );
    case 'ENAMETOOLONG':
      return new OutputError(
        path,
        code,
        `${path}: the name is too long for the file system (${doing})`,
        'choose a shorter path',
      );
    case 'ENOENT':
      return new OutputError(
        path,
        code,
        `${path}: no such file or folder (${doing})`,
        'check the path (was a folder removed while distill ran?)',
      );
    default:
      return new OutputError(
        path,
        code,
        `${path}: ${code} while ${doing} (${e.message})`,
        'check the disk and the path (dmesg may say more)',
      );
  }
}

// --- Fault injection, for the tests: DISTILL_FAULT_WRITE="CODE[@PART][#N]" makes the Nth operation (default the first)
// that creates, writes, appends, renames or copies a path containing PART fail with CODE (ENOSPC, EROFS, EACCES,
// ENOTDIR, EISDIR, EMFILE, EIO ...). A file write fails after half of its bytes, as on a full disk. Removing is never
// failed. Unset in normal runs. ---

let faultMatches = 0;

function injectedFault(path: string): NodeJS.ErrnoException | undefined {
  const spec = process.env['DISTILL_FAULT_WRITE'];
  if (!spec) return undefined;
  const m = /^(E[A-Z]+)(?:@([^#]*))?(?:#(\d+))?$/.exec(spec);
  if (!m) return undefined;
  if (m[2] && !path.includes(m[2])) return undefined;
  faultMatches++;
  if (faultMatches !== Number(m[3] ?? 1)) return undefined;
  const err = new Error(`${m[1]}: injected by DISTILL_FAULT_WRITE, ${path}`) as NodeJS.ErrnoException;
  err.code = m[1];
  err.path = path;
  return err;
}

/**
 * Run one fs operation on `path`; an OS error becomes an OutputError. `partly` does what the failing operation would
 * have done before an injected fault (half a file on a full disk).
 */
function guarded<T>(path: string, doing: string, op: () => T, bytes?: number, partly?: () => void, inject = true): T {
  try {
    const fault = inject ? injectedFault(path) : undefined;
    if (fault) {
      partly?.();
      throw fault;
    }
    return op();
  } catch (e) {
    const os = osErrorOf(e);
    if (!os || e instanceof DistillError) throw e;
    throw describeOsError(os, path, doing, bytes);
  }
}

// --- Temps in progress: removed when a signal ends the process before they are complete. ---

const tempsInProgress = new Set<string>();

/** Remove every temp file or folder still being written (on SIGINT/SIGTERM, before the process ends). */
export function removeTempsInProgress(): void {
  for (const t of tempsInProgress) rmSync(t, { recursive: true, force: true });
  tempsInProgress.clear();
}

/** `PATH.tmp-PID`: the name a file or folder has while it is written. */
export function tempNameFor(path: string): string {
  return `${path}.tmp-${process.pid}`;
}

/** Whether a process of this machine is running (signal 0 asks without sending anything). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether `name` is a temp of a process that is no longer running (left by a kill -9 or a power cut). */
export function isStaleTemp(name: string): boolean {
  const m = /\.tmp-(\d+)$/.exec(name);
  return m !== null && Number(m[1]) !== process.pid && !processAlive(Number(m[1]));
}

/** A temp being written: removed if a signal ends the process before untrackTemp. */
export function trackTemp(temp: string): void {
  tempsInProgress.add(temp);
}

export function untrackTemp(temp: string): void {
  tempsInProgress.delete(temp);
}

/** Track a temp while `write` fills it: removed if `write` throws (and on a signal meanwhile). */
export function writingTemp<T>(temp: string, write: () => T): T {
  trackTemp(temp);
  try {
    return write();
  } catch (e) {
    rmSync(temp, { recursive: true, force: true });
    throw e;
  } finally {
    untrackTemp(temp);
  }
}

// --- The writes. ---

/** Create a folder (and its parents); nothing when it exists. */
export function makeDir(path: string): void {
  guarded(path, 'creating the folder', () => {
    try {
      mkdirSync(path, { recursive: true });
    } catch (e) {
      // Node's recursive mkdir reports ENOENT where the disk said EROFS or EACCES: the first folder missing, made
      // alone, gives the real error.
      if (osErrorOf(e)?.code !== 'ENOENT') throw e;
      let missing = path;
      while (!existsSync(dirname(missing)) && dirname(missing) !== missing) missing = dirname(missing);
      mkdirSync(missing);
      mkdirSync(path, { recursive: true });
    }
  });
}

/** Write a file atomically: PATH.tmp-PID written and fsynced, then renamed over PATH. Nothing is left on failure. */
export function writeFileAtomic(path: string, bytes: Uint8Array | string): void {
  const data = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
  const tmp = tempNameFor(path);
  writingTemp(tmp, () => {
    guarded(
      tmp,
      'writing',
      () => writeFileSync(tmp, data),
      data.byteLength,
      () => writeFileSync(tmp, data.subarray(0, data.byteLength >> 1)),
    );
    syncFile(tmp, data.byteLength);
    renamePath(tmp, path);
  });
}

function syncFile(path: string, bytes: number): void {
  guarded(
    path,
    'writing',
    () => {
      const fd = openSync(path, 'r');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    },
    bytes,
    undefined,
    false,
  );
}

/** Append text to a file (metrics.jsonl): a line is written whole or the error says so. */
export function appendText(path: string, text: string): void {
  guarded(path, 'appending to the file', () => appendFileSync(path, text), Buffer.byteLength(text));
}

/** Rename a file or folder (a temp into place, a folder moved aside). */
export function renamePath(from: string, to: string): void {
  guarded(to, `renaming ${from} to it`, () => renameSync(from, to));
}

/** Copy a file (tokenizer files into a checkpoint or an export). */
export function copyFileTo(from: string, to: string): void {
  const bytes = existsSync(from) ? statSync(from).size : undefined;
  guarded(to, `copying ${from}`, () => copyFileSync(from, to), bytes);
}

/** Remove a file or folder distill wrote (an old checkpoint, a stale temp). */
export function removePath(path: string): void {
  guarded(path, 'removing', () => rmSync(path, { recursive: true, force: true }), undefined, undefined, false);
}

/** Create a file only if it does not exist (a lock); returns false when it exists. */
export function createExclusive(path: string, text: string): boolean {
  let fd: number;
  try {
    fd = guarded(path, 'creating the file', () => openSync(path, 'wx'));
  } catch (e) {
    if (e instanceof OutputError && e.code === 'EEXIST') return false;
    throw e;
  }
  try {
    guarded(path, 'writing', () => writeSync(fd, text), Buffer.byteLength(text));
  } finally {
    closeSync(fd);
  }
  return true;
}
