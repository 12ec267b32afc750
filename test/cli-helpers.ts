// Run the built CLI (dist/src/cli.js, built by `npm test` before vitest starts) as a user would.
import { spawnSync } from 'node:child_process';
import { expect } from 'vitest';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
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

/** One task's metrics in a probe report: teacher, student, the trivial baseline. */
export type ProbeTaskMetrics = Record<'teacher' | 'student' | 'majority', Record<string, number>>;

/**
 * `distill probe` of the tiny teacher's `student` on one task (wasm, one teacher thread), `extra` options added;
 * its report's first task and the printed table.
 */
export function probeOneTask(
  teacher: string,
  student: string,
  task: string,
  out: string,
  extra: string[],
): { metrics: ProbeTaskMetrics; mode: string; table: string } {
  const r = runCli(
    ['probe', '--teacher', teacher, '--student', student, '--task', task, '--out', out]
      .concat(['--threads', '1', '--backend', 'wasm'])
      .concat(extra),
    { timeoutMs: 600_000 },
  );
  expect(r.status, r.stderr).toBe(0);
  const report = JSON.parse(readFileSync(out, 'utf8')) as { mode: string; tasks: { metrics: ProbeTaskMetrics }[] };
  return { metrics: report.tasks[0]!.metrics, mode: report.mode, table: r.stdout };
}

/** The built-in probe tasks (GLUE and span layouts) and a teacher-layer student of `teacher`, made under `work`. */
export function probeFixtures(work: string, teacher: string): { tasks: string; student: string } {
  const tasks = join(work, 'probe-data');
  const made = runCli(['probe-data', tasks, '--per-class', '20']);
  expect(made.status, made.stderr).toBe(0);
  const student = join(work, 'student');
  const init = runCli(['init-student', '--teacher', teacher, '--out', student, '--no-onnx']);
  expect(init.status, init.stderr).toBe(0);
  return { tasks, student };
}
