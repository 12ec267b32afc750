// One scratch folder per `vitest run`: every test's mkdtemp folders (runs, checkpoints, exported models, prepared
// corpora; the CLI and mpirun children inherit it too) go under it, and it is removed when the run ends, so that
// a long-lived machine does not fill up (sessions of them once filled a disk and failed later runs with ENOSPC).
// os.tmpdir() reads TMPDIR at each call, and the test forks start after this with the environment set here.
// DISTILL_KEEP_TEST_FILES=1 keeps the folder (its path is printed) to look into a failure.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'distill-tests-'));
  const previous = process.env['TMPDIR'];
  process.env['TMPDIR'] = dir;
  return () => {
    if (previous === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = previous;
    if (process.env['DISTILL_KEEP_TEST_FILES']) console.log(`test files kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  };
}
