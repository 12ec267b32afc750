// Runs that cannot be wrecked: one owner per run folder (a lock), no fresh run over an existing one without
// --force (which moves the old one aside, never deletes it), and SIGTERM / SIGINT finishing the current
// update with a checkpoint from which --resume continues exactly.
import { beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { latestCheckpoint } from '../src/train/checkpoint.js';
import { DivergenceGuard } from '../src/train/divergence.js';
import { publicDomainParagraphs } from '../corpus/public-domain.js';
import { runCli } from './cli-helpers.js';
import { REPO, TINY, folderDigest, folderWeights } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'distill-run-folder-'));
const configPath = join(work, 'config.json');
const CLI = join(REPO, 'dist', 'src', 'cli.js');

beforeAll(() => {
  const text = join(work, 'moby.txt');
  writeFileSync(text, publicDomainParagraphs('moby-dick').slice(0, 400).join('\n') + '\n');
  writeFileSync(
    configPath,
    JSON.stringify({
      teacher: TINY,
      corpus: join(work, 'corpus'),
      corpus_inputs: [text],
      max_length: 48,
      batch_size: 4,
      grad_accum: 2,
      max_steps: 12,
      checkpoint_every: 0,
      keep_checkpoints: 5,
      backend: 'wasm',
      teacher_threads: 1,
      seed: 9,
    }),
  );
  // Prepare the corpus once (a 1-update run elsewhere), so that the runs below start at once.
  expect(runCli(['train', '--config', configPath, '--out', join(work, 'warm'), '--max-steps', '1']).status).toBe(0);
});

const digest = folderDigest;

function metricLines(runDir: string): number {
  const path = join(runDir, 'metrics.jsonl');
  return existsSync(path)
    ? readFileSync(path, 'utf8')
        .trim()
        .split('\n')
        .filter((l) => l).length
    : 0;
}

function losses(runDir: string): number[] {
  return readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { loss: number }).loss);
}

/** Start `distill train` in the background; resolves with its exit code and stderr. */
function startTrain(args: string[]): { pid: number; done: Promise<{ code: number | null; stderr: string }> } {
  const child = spawn(process.execPath, [CLI, 'train', '--config', configPath, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdout.resume();
  const done = new Promise<{ code: number | null; stderr: string }>((resolveDone) =>
    child.on('exit', (code) => resolveDone({ code, stderr })),
  );
  return { pid: child.pid!, done };
}

async function waitFor(condition: () => boolean, what: string, ms = 120_000): Promise<void> {
  const until = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('one owner per run folder', () => {
  it('refuses a fresh run over an existing one; --force moves the old run aside untouched', () => {
    const runDir = join(work, 'existing');
    expect(runCli(['train', '--config', configPath, '--out', runDir, '--max-steps', '2']).status).toBe(0);
    const before = digest(runDir);
    const again = runCli(['train', '--config', configPath, '--out', runDir, '--max-steps', '2']);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/error: .*existing already holds a run/);
    expect(again.stderr).toMatch(/hint: continue it with --resume, start over with --force/);
    expect(digest(runDir)).toBe(before);

    const forced = runCli(['train', '--config', configPath, '--out', runDir, '--max-steps', '2', '--force']);
    expect(forced.status, forced.stderr).toBe(0);
    const moved = readdirSync(dirname(runDir)).filter((n) => n.startsWith('existing.old-'));
    expect(moved).toHaveLength(1);
    expect(forced.stderr).toContain(`was moved to ${join(dirname(runDir), moved[0]!)}`);
    expect(digest(join(dirname(runDir), moved[0]!))).toBe(before); // the old run, byte for byte
    expect(metricLines(runDir)).toBe(2);
  });

  it(
    'refuses a second train on the same folder, ' + 'naming the owner; the first finishes intact and resumable',
    async () => {
      const runDir = join(work, 'shared');
      const first = startTrain(['--out', runDir, '--checkpoint-every', '4']);
      await waitFor(
        () => existsSync(join(runDir, '.distill-lock')) && metricLines(runDir) >= 1,
        'the first run to start',
      );
      const second = runCli(['train', '--config', configPath, '--out', runDir, '--resume']);
      expect(second.status).toBe(1);
      expect(second.stderr).toMatch(new RegExp(`is in use by distill train: process ${first.pid} on `));
      const { code, stderr } = await first.done;
      expect(code, stderr).toBe(0);
      expect(metricLines(runDir)).toBe(12); // one line per update: nothing interleaved
      expect(existsSync(join(runDir, '.distill-lock'))).toBe(false); // released
      const resumed = runCli(['train', '--config', configPath, '--out', runDir, '--resume']);
      expect(resumed.status, resumed.stderr).toBe(0);
      expect(metricLines(runDir)).toBe(12);
    },
  );
});

describe('resume that says what it does', () => {
  const lrs = (runDir: string): number[] =>
    readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { lr?: number })
      .filter((m) => m.lr !== undefined)
      .map((m) => m.lr!);

  it(
    '--resume --set lr and max_steps: changed, printed, recorded; ' +
      'the longer run follows the schedule of a run planned that long',
    () => {
      const runDir = join(work, 'extended');
      expect(runCli(['train', '--config', configPath, '--out', runDir, '--max-steps', '6']).status).toBe(0);
      const r = runCli([
        'train',
        '--config',
        configPath,
        '--out',
        runDir,
        '--resume',
        '--set',
        'lr=2e-4',
        'max_steps=10',
      ]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toContain('resuming from');
      expect(r.stderr).toContain('changed: lr 0.0005 → 0.0002, max_steps 6 → 10');
      expect(r.stderr).toMatch(/the schedule now ends at update 10 \(was 6\)/);
      // metrics.jsonl: updates 1–6, the resume's record, updates 7–10.
      const lines = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines).toHaveLength(11);
      expect(lines[6]).toMatchObject({
        event: 'resume',
        step: 6,
        changed: { lr: { from: 5e-4, to: 2e-4 }, max_steps: { from: 6, to: 10 } },
      });
      const state = JSON.parse(readFileSync(join(latestCheckpoint(runDir)!, 'trainer_state.json'), 'utf8')) as Record<
        string,
        unknown
      >;
      expect(state['resumes']).toEqual([
        expect.objectContaining({ step: 6, changed: { lr: { from: 5e-4, to: 2e-4 }, max_steps: { from: 6, to: 10 } } }),
      ]);
      expect(state).toMatchObject({
        step: 10,
        total_updates: 10,
        schedule: { total: 10 },
        config: { lr: 2e-4, max_steps: 10 },
      });
      // Updates 7–10 at the lr a 10-update run has there (warm-up ⌈0.05·6⌉ = 1 update kept), scaled to the new peak:
      // 2e-4 · (10 − d)/9 after d updates; not 0, which the old schedule (ended at 6) would give.
      expect(lrs(runDir).slice(6)).toEqual(
        [4, 3, 2, 1].map((k) => (2e-4 * k) / 9).map((x): unknown => expect.closeTo(x, 15)),
      );
      // Without a change, --resume continues exactly and records nothing.
      const again = runCli(['train', '--config', configPath, '--out', runDir, '--resume', '--max-steps', '12']);
      expect(again.status, again.stderr).toBe(0);
      expect(again.stderr).toContain('changed: max_steps 10 → 12');
      // the file says 5e-4; the run goes on at 2e-4
      expect(again.stderr).toContain('the config given differs in lr: ignored');
      expect(lrs(runDir).slice(10)).toEqual(
        [2, 1].map((k) => (2e-4 * k) / 11).map((x): unknown => expect.closeTo(x, 15)),
      );
    },
  );

  it('refuses keys that would make another run, naming why, and changes nothing', () => {
    const runDir = join(work, 'refused');
    expect(runCli(['train', '--config', configPath, '--out', runDir, '--max-steps', '2']).status).toBe(0);
    const before = digest(runDir);
    for (const [set, why] of [
      ['batch_size=8', /cannot change "batch_size" \(4 in the checkpoint, 8 asked\): the batches .* would change/],
      ['seed=1', /cannot change "seed" .*the batches/],
      [`teacher=${join(work, 'other-teacher')}`, /cannot change "teacher" .*another teacher makes another run/],
      ['student=[0]', /cannot change "student" .*takes the student .* from the checkpoint/],
      ['mlm_mask_prop=0.2', /cannot change "mlm_mask_prop" .*masking/],
      ['betas=[0.8,0.9]', /cannot change "betas" .*moments/],
    ] as const) {
      const r = runCli(['train', '--config', configPath, '--out', runDir, '--resume', '--set', set]);
      expect(r.status, set).toBe(1);
      expect(r.stderr, set).toMatch(why);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
    const shorter = runCli(['train', '--config', configPath, '--out', runDir, '--resume', '--max-steps', '1']);
    expect(shorter.status).toBe(1);
    expect(shorter.stderr).toContain('the run has done 2 updates; a length of 1 would end it before now');
    // The same refusal without --config (the checkpoint's config, then --set).
    const noConfig = runCli(['train', '--out', runDir, '--resume', '--set', 'batch_size=8']);
    expect(noConfig.status).toBe(1);
    expect(noConfig.stderr).toMatch(/cannot change "batch_size" \(4 in the checkpoint, 8 asked\)/);
    expect(digest(runDir)).toBe(before);
    // Without --config, a run needs --resume and --out; a folder without a checkpoint is named, and not created.
    for (const [args, message] of [
      [[], 'error: --config <file> is required'],
      [['--resume'], 'error: --resume without --config needs --out'],
      [
        ['--resume', '--out', join(work, 'no-such-run')],
        `error: --resume: ${join(work, 'no-such-run')} holds no run to continue`,
      ],
      // A --config that is not a file: named, with the shipped examples as the hint.
      [
        ['--config', join(work, 'no-such.json'), '--out', join(work, 'no-such-run')],
        `error: --config ${join(work, 'no-such.json')}: no such file`,
      ],
      [['--config', work, '--out', join(work, 'no-such-run')], `error: --config ${work}: a folder, not a file`],
    ] as const) {
      const r = runCli(['train', ...args]);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr, args.join(' ')).toContain(message);
      expect(r.stderr, args.join(' ')).toMatch(/\nhint: /);
    }
    expect(existsSync(join(work, 'no-such-run'))).toBe(false);
  });

  it(
    '--resume --set lr=1e6 stops within a few updates, naming the checkpoint it resumed from (judged against the ' +
      "run's recorded levels)",
    () => {
      const runDir = join(work, 'resumed-diverging');
      expect(runCli(['train', '--config', configPath, '--out', runDir, '--max-steps', '6']).status).toBe(0);
      const r = runCli([
        'train',
        '--config',
        configPath,
        '--out',
        runDir,
        '--resume',
        '--set',
        'lr=1e6',
        'max_steps=12',
        'checkpoint_every=1',
      ]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(
        /error: (the loss is (NaN|Infinity)|the loss or the gradient norm stayed above 10× its recent level for 3 updates)/,
      );
      const good = /the last checkpoint known to be good is (\S+?)[ ;]/.exec(r.stderr)?.[1];
      expect(good).toBe(join(runDir, 'checkpoints', 'step-00000006'));
      expect(latestCheckpoint(runDir)).toBe(good);
      expect(metricLines(runDir)).toBeLessThan(6 + 1 + 5); // a few updates after the resume, not six
    },
  );
});

describe('clean stops', () => {
  it(
    'SIGTERM finishes the update, checkpoints it, ' + 'exits 143 saying how to resume; --resume continues exactly',
    async () => {
      const straight = join(work, 'straight');
      expect(runCli(['train', '--config', configPath, '--out', straight]).status).toBe(0);

      const runDir = join(work, 'terminated');
      const run = startTrain(['--out', runDir]);
      await waitFor(() => metricLines(runDir) >= 2, 'two updates');
      process.kill(run.pid, 'SIGTERM');
      const { code, stderr } = await run.done;
      expect(code, stderr).toBe(143);
      const done = metricLines(runDir);
      expect(done).toBeGreaterThanOrEqual(2);
      expect(done).toBeLessThan(12);
      const checkpoint = latestCheckpoint(runDir)!;
      expect(checkpoint.endsWith(`step-${String(done).padStart(8, '0')}`)).toBe(true); // the update it was in
      expect(stderr).toMatch(
        new RegExp(
          `stopped by SIGTERM after update ${done} of 12; checkpoint: .*step-${String(done).padStart(8, '0')}`,
        ),
      );
      expect(stderr).toContain(`continue with: distill train --out ${runDir} --resume\n`);

      // That command, as printed: no --config (the run's own is in its checkpoint).
      const resumed = runCli(['train', '--out', runDir, '--resume']);
      expect(resumed.status, resumed.stderr).toBe(0);
      expect(losses(runDir)).toEqual(losses(straight));
      const a = folderWeights(latestCheckpoint(runDir)!);
      const b = folderWeights(latestCheckpoint(straight)!);
      for (const [name, w] of a)
        expect(Buffer.from(w.buffer).equals(Buffer.from(b.get(name)!.buffer)), name).toBe(true);
    },
  );
});

describe('divergence caught before NaN', () => {
  it(
    '--set lr=1e6 stops within a few updates, ' +
      'naming a checkpoint whose next loss was normal; later ones set aside',
    () => {
      const runDir = join(work, 'diverging');
      const r = runCli([
        'train',
        '--config',
        configPath,
        '--out',
        runDir,
        '--set',
        'lr=1e6',
        '--checkpoint-every',
        '1',
      ]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(
        /error: (the loss is (NaN|Infinity)|the loss or the gradient norm stayed above 10× its recent level for 3 updates)/,
      );
      const good = /the last checkpoint known to be good is (\S+?)[ ;]/.exec(r.stderr)?.[1];
      expect(good, r.stderr).toBeDefined();
      const goodStep = Number(/step-(\d+)$/.exec(good!)![1]);
      const lines = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { step: number; loss: number });
      expect(lines.length).toBeLessThan(8); // stopped within a few updates, not at 12
      // The update after the named checkpoint ran on its weights, and its loss was normal (the first update's level).
      expect(lines[goodStep]!.loss).toBeLessThan(2 * lines[0]!.loss);
      expect(latestCheckpoint(runDir)).toBe(good); // --resume continues from it
      const aside = readdirSync(join(runDir, 'checkpoints')).filter((n) => n.endsWith('.diverged'));
      expect(aside.length).toBeGreaterThan(0); // the later ones, kept
      expect(r.stderr).toMatch(/set aside as \*\.diverged, not deleted/);
    },
  );

  it(
    'the guard: a single spike passes, three updates beyond 10× their median stop; ' +
      'a checkpoint is good once the next update is normal',
    () => {
      const guard = new DivergenceGuard(10, 3);
      for (let u = 1; u <= 4; u++) expect(guard.observe(u, 20 - u, 40).diverged).toBe(false);
      guard.wroteCheckpoint(4, 'ckpt-4');
      expect(guard.lastGood()).toBeUndefined(); // not yet: update 5 has not run on its weights
      expect(guard.observe(5, 19, 40).abnormal).toBe(false);
      expect(guard.lastGood()).toBe('ckpt-4');
      guard.wroteCheckpoint(5, 'ckpt-5');
      expect(guard.observe(6, 500, 40)).toMatchObject({ abnormal: true, diverged: false }); // a spike
      expect(guard.observe(7, 18, 40).abnormal).toBe(false); // back to normal: the streak ends
      expect(guard.lastGood()).toBe('ckpt-4'); // update 6 (on ckpt-5's weights) was not normal
      expect(guard.observe(8, 19, 900).diverged).toBe(false); // the gradient norm counts too
      expect(guard.observe(9, 300, 40).diverged).toBe(false);
      expect(guard.observe(10, 400, 40)).toMatchObject({ diverged: true, streakStart: 8 });
      expect(new DivergenceGuard(10, 3).observe(1, NaN, NaN).diverged).toBe(true);
      expect(new DivergenceGuard(0, 3).observe(3, 1e30, 1e30).diverged).toBe(false); // factor 0: off
    },
  );
});
