// test/global-setup.ts: the tests' scratch folders go under one folder per run (removed when the run ends).
import { describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { execFileSync } from 'node:child_process';

describe('scratch folders', () => {
  it("os.tmpdir() in a test, and in a child process it starts, is the run's own folder", () => {
    expect(basename(tmpdir())).toMatch(/^distill-tests-/);
    const made = mkdtempSync(join(tmpdir(), 'distill-probe-'));
    expect(dirname(made)).toBe(tmpdir());
    const child = execFileSync(process.execPath, ['-e', 'process.stdout.write(require("node:os").tmpdir())'], {
      encoding: 'utf8',
    });
    expect(child).toBe(tmpdir());
  });
});
