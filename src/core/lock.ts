// One writer per output folder. A command that writes into a folder over time (train into its run folder,
// prepare into its corpus) holds DIR/.distill-lock (pid, host, command, start) while it runs: a second one on
// the same folder is refused with the owner named;
// a lock whose process is gone (same host) is stale, named, and taken over.

import { readFileSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { DistillError } from './errors.js';
import { createExclusive, processAlive } from './out.js';

export const LOCK_FILE = '.distill-lock';

interface LockOwner {
  pid: number;
  host: string;
  started: string;
  command?: string;
}

/**
 * Take the lock of `dir` (the folder exists) for `command` ("train", "prepare"). Returns the release function.
 * Throws a DistillError naming the owner when another live process holds it;
 * `onStale` hears of a stale lock taken over.
 */
export function acquireFolderLock(
  dir: string,
  command: string,
  onStale: (message: string) => void = () => undefined,
): () => void {
  const path = join(dir, LOCK_FILE);
  const me: LockOwner = { pid: process.pid, host: hostname(), started: new Date().toISOString(), command };
  for (let attempt = 0; attempt < 2; attempt++) {
    if (!createExclusive(path, JSON.stringify(me) + '\n')) {
      let owner: LockOwner | undefined;
      try {
        owner = JSON.parse(readFileSync(path, 'utf8')) as LockOwner;
      } catch {
        owner = undefined; // half-written by a process that died while writing it
      }
      if (owner && (owner.host !== me.host || processAlive(owner.pid))) {
        const what = owner.command ? `distill ${owner.command}` : 'another distill process';
        throw new DistillError(
          `${dir} is in use by ${what}: process ${owner.pid} on ${owner.host}, started ${owner.started}`,
          owner.host === me.host
            ? `wait for it to end, stop it (kill -TERM ` +
                `${owner.pid}${owner.command === 'train' ? ' checkpoints and stops' : ''}), or choose another folder`
            : `if that process is gone, remove ${path}; else choose another folder`,
        );
      }
      onStale(
        owner
          ? `${path}: taking over the stale lock of process ${owner.pid} (${owner.host}, ` +
              `started ${owner.started}), which is no longer running`
          : `${path}: taking over an unreadable lock`,
      );
      rmSync(path, { force: true });
      continue;
    }
    return () => {
      try {
        const owner = JSON.parse(readFileSync(path, 'utf8')) as LockOwner;
        if (owner.pid === me.pid && owner.host === me.host) rmSync(path, { force: true });
      } catch {
        // already gone
      }
    };
  }
  throw new DistillError(`${path}: could not take the lock`, 'remove the file if no distill process uses the folder');
}
