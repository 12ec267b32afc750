// distill train: configs, a short run whose loss goes down, exact resume, crashes while checkpointing.
import { beforeAll, describe, expect, it } from 'vitest';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadConfig, type TrainConfig } from '../src/config.js';
import { train } from '../src/train/loop.js';
import { latestCheckpoint, listCheckpoints } from '../src/train/checkpoint.js';
import { SafetensorsFile } from '../src/core/safetensors.js';
import { publicDomainParagraphs } from '../corpus/public-domain.js';
import { expectCleanError, runCli, type CliResult } from './cli-helpers.js';
import { folderDigest, REPO, TINY } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'distill-train-'));
const corpusText = join(work, 'moby.txt');
const configPath = join(work, 'config.json');

function config(extra: Partial<TrainConfig> = {}): TrainConfig {
  return loadConfig(
    configPath,
    Object.entries(extra).map(([k, v]) => `${k}=${JSON.stringify(v)}`),
  );
}

beforeAll(() => {
  writeFileSync(corpusText, publicDomainParagraphs('moby-dick').slice(0, 400).join('\n') + '\n');
  writeFileSync(
    configPath,
    JSON.stringify({
      teacher: TINY,
      corpus: join(work, 'corpus'),
      corpus_inputs: [corpusText],
      max_length: 48,
      batch_size: 4,
      grad_accum: 2,
      max_steps: 4,
      checkpoint_every: 2,
      keep_checkpoints: 5,
      backend: 'wasm',
      teacher_threads: 1,
      seed: 7,
    }),
  );
});

function losses(runDir: string): number[] {
  return readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { loss?: number })
    .filter((l) => l.loss !== undefined)
    .map((l) => l.loss!);
}

function weightsOf(checkpoint: string): Map<string, Float32Array> {
  const f = SafetensorsFile.read(join(checkpoint, 'model.safetensors'));
  return new Map(f.names().map((n) => [n, f.getFloat32(n)]));
}

function expectSameWeights(a: string, b: string): void {
  const wa = weightsOf(a);
  const wb = weightsOf(b);
  expect([...wa.keys()]).toEqual([...wb.keys()]);
  for (const [name, values] of wa)
    expect(Buffer.from(values.buffer).equals(Buffer.from(wb.get(name)!.buffer)), name).toBe(true);
}

describe('config on the command line', () => {
  it("names a bad --set key as the option's fault", () => {
    const r = runCli(['train', '--config', configPath, '--set', 'nope=1']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^error: --set: unknown key "nope"/m);
  });
});

describe('training', () => {
  it('runs, checkpoints, and lowers the loss, with a flat tensor count', async () => {
    const runDir = join(work, 'loss-down');
    const counts: number[] = [];
    const summary = await train({
      config: config({ max_steps: 16, grad_accum: 1, batch_size: 8, lr: 2e-3, warmup_prop: 0.1, checkpoint_every: 8 }),
      runDir,
      resume: false,
      onUpdate: () => counts.push(tf.memory().numTensors),
    });
    expect(summary.steps).toBe(16);
    const l = losses(runDir);
    expect(l.length).toBe(16);
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(l.slice(-4))).toBeLessThan(mean(l.slice(0, 4)) * 0.9);
    expect(listCheckpoints(runDir).map((c) => c.split('/').pop())).toEqual(['step-00000008', 'step-00000016']);
    expect(new Set(counts.slice(2)).size).toBe(1);
    const ck = latestCheckpoint(runDir)!;
    for (const f of [
      'config.json',
      'model.safetensors',
      'optimizer.safetensors',
      'trainer_state.json',
      'tokenizer.json',
    ])
      expect(existsSync(join(ck, f)), f).toBe(true);
    const metrics = JSON.parse(readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').split('\n')[0]!) as Record<
      string,
      number
    >;
    expect(Object.keys(metrics)).toEqual([
      'step',
      'lr',
      'loss',
      'loss_ce',
      'loss_mlm',
      'loss_cos',
      'loss_mse',
      'grad_norm',
      'tokens',
      'tokens_per_s',
      'elapsed_s',
    ]);
  });

  it('resumes exactly: N straight equals N/2 + resume + N/2 (losses and weights)', async () => {
    const straight = join(work, 'straight');
    await train({ config: config(), runDir: straight, resume: false });
    const split = join(work, 'split');
    await train({ config: config(), runDir: split, resume: false, stopAfter: 2 });
    expect(losses(split).length).toBe(2);
    await train({ config: config({ lr: 1 }), runDir: split, resume: true }); // the checkpoint's config wins
    expect(losses(split)).toEqual(losses(straight));
    expectSameWeights(latestCheckpoint(straight)!, latestCheckpoint(split)!);
  });

  it('never loads a half-written checkpoint: a crash while writing one resumes from the one before', async () => {
    const runDir = join(work, 'crash-write');
    let writes = 0;
    await expect(
      train({
        config: config(),
        runDir,
        resume: false,
        checkpointHooks: {
          beforeCommit: () => {
            writes++;
            if (writes === 2) throw new Error('simulated crash while checkpointing');
          },
        },
      }),
    ).rejects.toThrow('simulated crash');
    expect(readdirSync(join(runDir, 'checkpoints')).sort()).toEqual(expect.arrayContaining(['step-00000002']));
    // A failure inside the process removes its temp; a process killed while writing leaves one, as here.
    expect(readdirSync(join(runDir, 'checkpoints')).some((f) => f.startsWith('step-00000004.tmp-'))).toBe(false);
    mkdirSync(join(runDir, 'checkpoints', 'step-00000004.tmp-99999999'));
    writeFileSync(join(runDir, 'checkpoints', 'step-00000004.tmp-99999999', 'model.safetensors'), 'half of it');
    expect(latestCheckpoint(runDir)!.endsWith('step-00000002')).toBe(true);
    await train({ config: config(), runDir, resume: true });
    expect(readdirSync(join(runDir, 'checkpoints')).some((f) => f.includes('.tmp-'))).toBe(false);
    expect(losses(runDir)).toEqual(losses(join(work, 'straight')));
    expectSameWeights(latestCheckpoint(runDir)!, latestCheckpoint(join(work, 'straight'))!);
  });

  it('a checkpoint damaged after it was written is named, with the way round it, and left as it is', () => {
    const runDir = join(work, 'damaged');
    cpSync(join(work, 'straight'), runDir, { recursive: true });
    const [first, last] = listCheckpoints(runDir);
    const resume = (): CliResult =>
      runCli(['train', '--config', configPath, '--out', runDir, '--resume', '--max-steps', '6']);
    // One byte of the weights flipped, the size unchanged: the checksum recorded at writing names it.
    const modelFile = join(last!, 'model.safetensors');
    const bytes = readFileSync(modelFile);
    bytes[bytes.length - 3]! ^= 0x40;
    writeFileSync(modelFile, bytes);
    const before = folderDigest(runDir);
    let r = resume();
    expectCleanError(
      r,
      new RegExp(
        `${modelFile}: its contents changed after distill wrote it: ` +
          `\\d+ bytes and SHA-256 [0-9a-f]{12}…, .*distill\\.json records`,
      ),
    );
    expect(r.stderr).toContain(
      `hint: the checkpoint is damaged: move it aside (mv ${last} ${last}.damaged) and --resume continues from ` +
        `${first}, the last checkpoint whose files verify`,
    );
    expect(folderDigest(runDir)).toEqual(before);
    // A file cut short is named the same way.
    writeFileSync(modelFile, bytes.subarray(0, 1000));
    expectCleanError(resume(), new RegExp(`${modelFile}: its contents changed after distill wrote it: 1000 bytes`));
    // As the hint says: the damaged one aside, and the one before damaged too (its trainer_state.json).
    renameSync(last!, `${last}.damaged`);
    writeFileSync(join(first!, 'trainer_state.json'), '{"step": 2,');
    r = resume();
    expectCleanError(r, /trainer_state\.json: its contents changed after distill wrote it/);
    expect(r.stderr).toMatch(
      /hint: the checkpoint is damaged and the run has no earlier one that verifies: start over with --force/,
    );
    // A checkpoint of an older distill (no checksums): a file that does not read is still named by its reader.
    rmSync(join(first!, 'distill.json'));
    expectCleanError(resume(), /trainer_state\.json: not valid JSON/);
  });

  it('after kill -9 of the CLI, --resume loses only the work since the last checkpoint', async () => {
    const runDir = join(work, 'kill9');
    const args = [
      join(REPO, 'dist', 'src', 'cli.js'),
      'train',
      '--config',
      configPath,
      '--out',
      runDir,
      '--checkpoint-every',
      '1',
    ];
    const child = spawn(process.execPath, args, { stdio: 'ignore' });
    await new Promise<void>((resolveWait, rejectWait) => {
      const timer = setInterval(() => {
        if (listCheckpoints(runDir).length >= 2) {
          clearInterval(timer);
          child.kill('SIGKILL');
          resolveWait();
        }
      }, 50);
      child.on('exit', () => {
        clearInterval(timer);
        resolveWait();
      });
      setTimeout(() => rejectWait(new Error('no checkpoint within 120 s')), 120_000);
    });
    await new Promise((r) => setTimeout(r, 200));
    const r = runCli(['train', '--config', configPath, '--out', runDir, '--resume', '--checkpoint-every', '1']);
    expect(r.status, r.stderr).toBe(0);
    expect(losses(runDir)).toEqual(losses(join(work, 'straight')));
    expectSameWeights(latestCheckpoint(runDir)!, latestCheckpoint(join(work, 'straight'))!);
  });

  it("runs the README's main job (configs/tiny.json), preparing the public-domain corpus itself", () => {
    const runDir = join(work, 'readme-main-job');
    const corpus = join(work, 'tiny-corpus');
    const r = runCli([
      'train',
      '--config',
      join(REPO, 'configs', 'tiny.json'),
      '--out',
      runDir,
      '--max-steps',
      '2',
      '--set',
      `corpus=${corpus}`,
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /preparing the corpus in .*tiny-corpus from @stdlib\/datasets-sotu, @stdlib\/datasets-moby-dick/,
    );
    // On wasm the run first rehearses its largest micro-batch (batch_size × the corpus's max_length): its [N, V]
    // logits, their gradient and the teacher's soft targets alone are 3 × 2048 × 6144 × 4 bytes = 144 MiB.
    const heap =
      /wasm memory: the largest micro-batch \(16 × 128 tokens\) fits; the memory has grown to (\d+) MiB of 4096/.exec(
        r.stderr,
      );
    expect(heap, r.stderr).not.toBeNull();
    expect(Number(heap![1])).toBeGreaterThan(144);
    const meta = JSON.parse(readFileSync(join(corpus, 'meta.json'), 'utf8')) as {
      sequences: { kept: number };
      tokens: number;
    };
    expect(meta.sequences.kept).toBeGreaterThan(20_000);
    expect(losses(runDir).length).toBe(2);
    // The quick start validates: on the record batches it held back, at its last update (here 2).
    expect(r.stderr).toMatch(/validation at update 2: val_loss \d/);
    expect(
      readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { step: number; val_loss?: number })
        .filter((l) => l.val_loss !== undefined)
        .map((l) => l.step),
    ).toEqual([2]);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { steps: number; backend: string };
    expect(summary).toMatchObject({ steps: 2, backend: 'wasm' });
  });

  it('refuses --resume without a checkpoint', () => {
    const empty = join(work, 'empty-run');
    mkdirSync(empty, { recursive: true });
    const r = runCli(['train', '--config', configPath, '--out', empty, '--resume']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--resume: .*empty-run holds no run to continue/);
  });
});
