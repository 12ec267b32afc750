// One owner per run folder. `train` holds RUN/.distill-lock (pid, host, start) for its whole life: a second
// `train` on the same folder is refused with the owner named; a lock whose process is gone (same host) is
// stale, named, and taken over. A fresh run into a folder that already holds a run is refused unless the user
// says what they want: --resume (continue it) or --force (start over, with the old run moved aside, never
// deleted).

import { existsSync, openSync, readFileSync, readdirSync, rmSync, writeSync, closeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { DistillError } from '../core/errors.js';

const LOCK = '.distill-lock';

interface LockOwner { pid: number; host: string; started: string }

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Take the run folder's lock (the folder exists). Returns the release function. Throws a DistillError naming
 * the owner when another live process holds it; `onStale` hears of a stale lock taken over.
 */
export function acquireRunLock(runDir: string, onStale: (message: string) => void = () => undefined): () => void {
  const path = join(runDir, LOCK);
  const me: LockOwner = { pid: process.pid, host: hostname(), started: new Date().toISOString() };
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let owner: LockOwner | undefined;
      try {
        owner = JSON.parse(readFileSync(path, 'utf8')) as LockOwner;
      } catch {
        owner = undefined; // half-written by a process that died while writing it
      }
      if (owner && (owner.host !== me.host || alive(owner.pid))) {
        throw new DistillError(`${runDir} is in use by another run: process ${owner.pid} on ${owner.host}, started ${owner.started}`,
          owner.host === me.host
            ? `wait for it to end, stop it (kill -TERM ${owner.pid} checkpoints and stops), or choose another --out`
            : `if that process is gone, remove ${path}; else choose another --out`);
      }
      onStale(owner ? `${path}: taking over the stale lock of process ${owner.pid} (${owner.host}, started ${owner.started}), which is no longer running`
        : `${path}: taking over an unreadable lock`);
      rmSync(path, { force: true });
      continue;
    }
    writeSync(fd, JSON.stringify(me) + '\n');
    closeSync(fd);
    return () => {
      try {
        const owner = JSON.parse(readFileSync(path, 'utf8')) as LockOwner;
        if (owner.pid === me.pid && owner.host === me.host) rmSync(path, { force: true });
      } catch {
        // already gone
      }
    };
  }
  throw new DistillError(`${path}: could not take the lock`, 'remove the file if no run uses the folder');
}

/** Whether `runDir` holds a run: its config, metrics or checkpoints. */
export function holdsRun(runDir: string): boolean {
  if (!existsSync(runDir)) return false;
  return ['config.json', 'metrics.jsonl'].some((f) => existsSync(join(runDir, f)))
    || (existsSync(join(runDir, 'checkpoints')) && readdirSync(join(runDir, 'checkpoints')).length > 0);
}
