// Run the built CLI (dist/src/cli.js, built by `npm test` before vitest starts) as a user would.
import { spawnSync } from 'node:child_process';
import { expect } from 'vitest';
import { join } from 'node:path';
import { REPO } from './helpers.js';

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): CliResult {
  const r = spawnSync(process.execPath, [join(REPO, 'dist', 'src', 'cli.js'), ...args], {
    cwd: options.cwd ?? REPO,
    encoding: 'utf8',
    env: { ...process.env, ...options.env },
    timeout: options.timeoutMs ?? 300_000,
    maxBuffer: 256 * 1024 * 1024,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A failure as users should see it: exit 1, the message, a hint line, and no stack trace. */
export function expectCleanError(r: CliResult, message: RegExp): void {
  expect(r.status, r.stderr).toBe(1);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).toMatch(/\nhint: /);
  expect(r.stderr).not.toMatch(/\n\s+at .*\(.*:\d+:\d+\)/);
}
