// Output folders are never overwritten without asking: a command that writes a folder refuses one that already
// holds files unless --force, and then moves the old folder aside (DIR.old-<time>), never deleting it.

import { existsSync, mkdirSync, readdirSync, renameSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { InputError } from './errors.js';

/** Move a folder aside (never deleted): DIR → DIR.old-<timestamp>. Returns where it went. */
export function moveAside(dir: string): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  let target = join(dirname(dir), `${basename(dir)}.old-${stamp}`);
  for (let i = 1; existsSync(target); i++) target = join(dirname(dir), `${basename(dir)}.old-${stamp}-${i}`);
  renameSync(dir, target);
  return target;
}

/**
 * Make `dir` ready to be written: created when missing; when it holds files, refused unless `force`, which
 * moves it aside first. `option` names the command-line option in the message. Returns where the old folder
 * went, if it was moved.
 */
export function claimOutputFolder(dir: string, force: boolean, option: string): string | undefined {
  let moved: string | undefined;
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    if (!force) {
      throw new InputError(`${dir} already exists and holds files (given as ${option})`,
        `choose another ${option}, or pass --force to move the old folder aside to ${basename(dir)}.old-<time> (it is never deleted)`);
    }
    moved = moveAside(dir);
  }
  mkdirSync(dir, { recursive: true });
  return moved;
}
