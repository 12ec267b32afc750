// Data-parallel training on MPI (OpenMPI's mpirun, two ranks on this machine's CPU). Skipped, with its
// reason printed, where mpirun is not installed; CI installs OpenMPI (.ci/run) so that it runs there.
import { beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { latestCheckpoint, listCheckpoints } from '../src/train/checkpoint.js';
import { publicDomainParagraphs } from '../corpus/public-domain.js';
import { runCli } from './cli-helpers.js';
import { REPO, TINY, canRun, expectWeightsAgree, folderWeights, relDiff, weightDifference } from './helpers.js';

const HAVE_MPIRUN = canRun(
  'mpi.test.ts',
  spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0
    ? undefined
    : 'mpirun not found (apt-get install -y openmpi-bin libopenmpi-dev)',
);

const work = mkdtempSync(join(tmpdir(), 'distill-mpi-'));
const configPath = join(work, 'config.json');
const CLI = join(REPO, 'dist', 'src', 'cli.js');

function mpirun(
  ranks: number,
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 240_000,
): { status: number | null; stderr: string; ms: number } {
  const started = Date.now();
  const r = spawnSync(
    'mpirun',
    ['--allow-run-as-root', '--oversubscribe', '-np', String(ranks), process.execPath, CLI, ...args],
    {
      encoding: 'utf8',
      env: { ...process.env, ...env },
      timeout: timeoutMs,
    },
  );
  return { status: r.status, stderr: r.stderr, ms: Date.now() - started };
}

interface MetricsLine {
  loss: number;
  grad_norm: number;
  lr: number;
}

function metrics(runDir: string): MetricsLine[] {
  return readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as MetricsLine)
    .filter((l) => 'loss' in l);
}

/** The evaluations' lines (val_*) of a run. */
function validation(runDir: string): Record<string, number>[] {
  return readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>)
    .filter((l) => 'val_loss' in l);
}

function losses(runDir: string): number[] {
  return metrics(runDir).map((m) => m.loss);
}

/**
 * N ranks × batch b against 1 rank × batch N·b: the same sums in another order, so per-update losses and
 * gradient norms within 1e-5 relative (float32 sums of a few thousand terms: measured ≤ 2e-7), and final
 * weights as any two float32 runs of one step may differ (expectWeightsAgree: within 2·Σ lr_t everywhere,
 * 0.05 lr RMS). A relative bound on the weights would not be sound: AdamW moves a weight whose gradient is
 * rounding noise by about lr, in a direction the rounding decides.
 */
function expectSameRun(parallel: string, single: string): void {
  const a = metrics(parallel);
  const b = metrics(single);
  expect(a.length).toBe(b.length);
  a.forEach((m, i) => {
    expect(relDiff(m.loss, b[i]!.loss), `update ${i + 1} loss`).toBeLessThan(1e-5);
    expect(relDiff(m.grad_norm, b[i]!.grad_norm), `update ${i + 1} grad_norm`).toBeLessThan(1e-5);
    expect(m.lr).toBe(b[i]!.lr);
  });
  const lr = Math.max(...b.map((m) => m.lr));
  const d = weightDifference(folderWeights(latestCheckpoint(parallel)!), folderWeights(latestCheckpoint(single)!), lr);
  console.log(`mpi.test.ts: ${parallel} vs ${single}: ${JSON.stringify(d)}`);
  expectWeightsAgree(
    d,
    b.map((m) => m.lr),
    lr,
  );
}

describe.runIf(HAVE_MPIRUN)('data-parallel training (mpirun -np 2)', () => {
  beforeAll(() => {
    const text = join(work, 'moby.txt');
    writeFileSync(text, publicDomainParagraphs('moby-dick').slice(0, 400).join('\n') + '\n');
    // Dropout off: each rank draws dropout masks for its own rows only.
    writeFileSync(
      configPath,
      JSON.stringify({
        teacher: TINY,
        corpus: join(work, 'corpus'),
        corpus_inputs: [text],
        max_length: 48,
        batch_size: 2,
        grad_accum: 2,
        max_steps: 4,
        checkpoint_every: 2,
        backend: 'wasm',
        teacher_threads: 1,
        seed: 11,
        dropout: 0,
      }),
    );
  });

  it(
    '2 ranks × batch b give the run of 1 rank × batch 2b: ' +
      'losses and gradient norms (1e-5), weights (in units of lr)',
    () => {
      const one = join(work, 'one');
      const single = runCli(['train', '--config', configPath, '--out', one, '--set', 'batch_size=4']);
      expect(single.status, single.stderr).toBe(0);
      const two = join(work, 'two');
      const r = mpirun(2, ['train', '--config', configPath, '--out', two]);
      expect(r.status, r.stderr).toBe(0);
      expect(metrics(two).length).toBe(4);
      expectSameRun(two, one);
      // Rank 0 alone wrote the run's files.
      const state = JSON.parse(readFileSync(join(latestCheckpoint(two)!, 'trainer_state.json'), 'utf8')) as {
        world_size: number;
        step: number;
      };
      expect(state).toMatchObject({ world_size: 2, step: 4 });
    },
  );

  it(
    'a half-width student with the intermediate-layer losses: ' +
      '2 ranks give the run of 1 rank (each loss scaled to the global token count)',
    () => {
      const set = [
        '--set',
        'student={"layers":2,"hidden":96,"heads":2,"intermediate":192}',
        '--set',
        'alpha_attention=1',
        '--set',
        'alpha_hidden=1',
        '--set',
        'alpha_value_relation=1',
      ];
      const one = join(work, 'narrow-one');
      const single = runCli(['train', '--config', configPath, '--out', one, '--set', 'batch_size=4', ...set]);
      expect(single.status, single.stderr).toBe(0);
      const two = join(work, 'narrow-two');
      const r = mpirun(2, ['train', '--config', configPath, '--out', two, ...set]);
      expect(r.status, r.stderr).toBe(0);
      expectSameRun(two, one);
      const [a, b] = [
        metrics(two) as unknown as Record<string, number>[],
        metrics(one) as unknown as Record<string, number>[],
      ];
      a.forEach((m, i) => {
        for (const k of ['loss_hidden', 'loss_att', 'loss_vr'])
          expect(relDiff(m[k]!, b[i]![k]!), `update ${i + 1} ${k}`).toBeLessThan(1e-5);
      });
    },
  );

  it('validation: each rank evaluates its share and the sums are added once, giving the metrics of 1 rank', () => {
    const validText = join(work, 'valid.txt');
    writeFileSync(validText, publicDomainParagraphs('moby-dick').slice(400, 460).join('\n') + '\n');
    const validCorpus = join(work, 'valid-corpus');
    expect(runCli(['prepare', '--tokenizer', TINY, '--out', validCorpus, '--max-length', '48', validText]).status).toBe(
      0,
    );
    const set = ['--set', `valid_corpus=${validCorpus}`, '--set', 'eval_every=2', '--set', 'eval_sequences=40'];
    const one = join(work, 'val-one');
    const single = runCli(['train', '--config', configPath, '--out', one, '--set', 'batch_size=4', ...set]);
    expect(single.status, single.stderr).toBe(0);
    const two = join(work, 'val-two');
    const r = mpirun(2, ['train', '--config', configPath, '--out', two, ...set]);
    expect(r.status, r.stderr).toBe(0);
    const [a, b] = [validation(two), validation(one)];
    expect(a.map((l) => l['step'])).toEqual([2, 4]);
    expect(a.map((l) => l['val_sequences'])).toEqual([40, 40]); // 40 sequences in all, not 40 per rank
    // The same sequences and masks; the weights of the two runs agree as expectSameRun says (a few float32
    // roundings apart), so the losses agree far within 1e-4 relative, the counts exactly, and a top-1 count by
    // at most one position (two logits that tie within the roundings may swap).
    a.forEach((l, i) => {
      expect(l['val_masked']).toBe(b[i]!['val_masked']);
      for (const k of ['val_loss', 'val_kl', 'val_cos'] as const)
        expect(relDiff(l[k]!, b[i]![k]!), `${k} at update ${l['step']}`).toBeLessThan(1e-4);
      for (const k of ['val_acc', 'val_agree'] as const)
        expect(Math.abs(l[k]! - b[i]![k]!), `${k} at update ${l['step']}`).toBeLessThanOrEqual(
          1 / l['val_masked']! + 1e-12,
        );
    });
  });

  it('handles global batches smaller than the world (ranks with no rows) and still equals 1 rank', () => {
    // 7 sequences: every epoch ends with a one-row global batch, of which two of three ranks get nothing.
    const text = join(work, 'seven.txt');
    // Fifteen words a line: 12 to 32 tokens, so each line is one sequence (no chunking, none dropped).
    const lines = publicDomainParagraphs('moby-dick')
      .filter((p) => p.split(' ').length > 20)
      .slice(0, 7)
      .map((p) => p.split(' ').slice(0, 15).join(' '));
    writeFileSync(text, lines.join('\n') + '\n');
    const cfg = join(work, 'seven.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        teacher: TINY,
        corpus: join(work, 'corpus-seven'),
        corpus_inputs: [text],
        max_length: 32,
        batch_size: 1,
        grad_accum: 3,
        max_steps: 3,
        checkpoint_every: 0,
        backend: 'wasm',
        teacher_threads: 1,
        seed: 3,
        dropout: 0,
      }),
    );
    const one = join(work, 'seven-one');
    expect(runCli(['train', '--config', cfg, '--out', one, '--set', 'batch_size=3']).status).toBe(0);
    expect(
      (JSON.parse(readFileSync(join(work, 'corpus-seven', 'meta.json'), 'utf8')) as { sequences: { kept: number } })
        .sequences.kept,
    ).toBe(7);
    const three = join(work, 'seven-three');
    const r = mpirun(3, ['train', '--config', cfg, '--out', three]);
    expect(r.status, r.stderr).toBe(0);
    expectSameRun(three, one);
  });

  it('resumes a 2-rank run with 2 ranks exactly, and refuses another rank count', () => {
    const split = join(work, 'split');
    expect(mpirun(2, ['train', '--config', configPath, '--out', split, '--stop-after', '2']).status).toBe(0);
    const wrong = runCli(['train', '--config', configPath, '--out', split, '--resume']);
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/written by 2 process\(es\), this run has 1/);
    const resumed = mpirun(2, ['train', '--config', configPath, '--out', split, '--resume']);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(losses(split)).toEqual(losses(join(work, 'two')));
    const d = weightDifference(
      folderWeights(latestCheckpoint(split)!),
      folderWeights(latestCheckpoint(join(work, 'two'))!),
      5e-4,
    );
    expect(d.maxAbsInLr).toBe(0); // bit-identical
  });

  it('stops every rank when one dies, or hangs, keeping the last checkpoint intact for --resume', () => {
    const died = join(work, 'died');
    const r = mpirun(2, ['train', '--config', configPath, '--out', died], { DISTILL_FAULT: '1:3:kill' }, 120_000);
    expect(r.status).not.toBe(0);
    expect(r.ms).toBeLessThan(100_000);
    expect(listCheckpoints(died).map((c) => c.split('/').pop())).toEqual(['step-00000002']);

    const hung = join(work, 'hung');
    const h = mpirun(
      2,
      ['train', '--config', configPath, '--out', hung],
      { DISTILL_FAULT: '1:3:hang', DISTILL_MPI_TIMEOUT_S: '10' },
      120_000,
    );
    expect(h.status).not.toBe(0);
    expect(h.stderr).toMatch(/did not complete within 10 s: another rank died or hangs/);
    expect(latestCheckpoint(hung)!.endsWith('step-00000002')).toBe(true);

    const resumed = mpirun(2, ['train', '--config', configPath, '--out', died, '--resume']);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(losses(died)).toEqual(losses(join(work, 'two')));
  });
});

describe('device placement per rank', () => {
  it('gives each local rank its own GPU through CUDA_VISIBLE_DEVICES', async () => {
    const { placeDevicePerRank } = await import('../src/parallel/mpi.js');
    const env1: NodeJS.ProcessEnv = { OMPI_COMM_WORLD_LOCAL_RANK: '1', OMPI_COMM_WORLD_LOCAL_SIZE: '4' };
    expect(placeDevicePerRank(env1)).toBe(1);
    expect(env1['CUDA_VISIBLE_DEVICES']).toBe('1');
    const env2: NodeJS.ProcessEnv = {
      OMPI_COMM_WORLD_LOCAL_RANK: '2',
      OMPI_COMM_WORLD_LOCAL_SIZE: '4',
      CUDA_VISIBLE_DEVICES: '4,5,6,7',
    };
    placeDevicePerRank(env2);
    expect(env2['CUDA_VISIBLE_DEVICES']).toBe('6');
    const alone: NodeJS.ProcessEnv = { CUDA_VISIBLE_DEVICES: '3' };
    placeDevicePerRank(alone);
    expect(alone['CUDA_VISIBLE_DEVICES']).toBe('3');
  });
});
