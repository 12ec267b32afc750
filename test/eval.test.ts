// Validation (issue #16): the metrics against a case worked out by hand, the held-out split (disjoint from
// training, the same after a resume), checkpoints/best (the lowest val_loss, still tracked after a resume),
// and `distill eval` on a checkpoint, its ONNX export and the teacher itself.
import { beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addBatch, emptySums, metricsOf, packSums, unpackSums } from '../src/eval/metrics.js';
import { cachedEvalModel, studentEvalModel, type EvalModel } from '../src/eval/models.js';
import { selectBackend } from '../student/backend.js';
import { initStudentFromTeacher, defaultStudentLayers } from '../student/init.js';
import { readEncoderConfig } from '../src/core/model-dir.js';
import { saveStudent } from '../student/io.js';
import { studentEncoder } from '../src/probe/features.js';
import type { EvalBatch } from '../src/eval/data.js';
import { loadConfig, type TrainConfig } from '../src/config.js';
import { train } from '../src/train/loop.js';
import { bestCheckpointDir, readTrainerState } from '../src/train/checkpoint.js';
import { CorpusReader, heldOutUnits } from '../corpus/reader.js';
import { publicDomainParagraphs } from '../corpus/public-domain.js';
import { expectCleanError, runCli } from './cli-helpers.js';
import { TINY } from './helpers.js';

describe("the teacher's outputs on the validation batches", () => {
  it('are computed once per batch while they fit the budget, and again for the batches beyond it', async () => {
    const calls: number[] = [];
    const batch = (i: number): EvalBatch => ({
      inputIds: Int32Array.of(i),
      attentionMask: Int32Array.of(1),
      batchSize: 1,
      seqLen: 1,
      maskedRows: Int32Array.of(0),
      labels: Int32Array.of(0),
      realRows: Int32Array.of(0),
    });
    const teacher: EvalModel = {
      vocabSize: 3,
      hiddenSize: 2,
      runtime: 'counted',
      outputs: (b) => {
        calls.push(b.inputIds[0]!);
        // 20 bytes a batch
        return Promise.resolve({ logits: Float32Array.of(b.inputIds[0]!, 0, 0), hidden: Float32Array.of(1, 1) });
      },
      release: () => Promise.resolve(),
    };
    const cached = cachedEvalModel(teacher, 45); // room for two batches' outputs
    const batches = [batch(0), batch(1), batch(2)];
    for (let evaluation = 0; evaluation < 3; evaluation++) {
      for (const b of batches) expect((await cached.outputs(b)).logits[0]).toBe(b.inputIds[0]);
    }
    expect(calls).toEqual([0, 1, 2, 2, 2]); // batches 0 and 1 kept; batch 2 over the budget, run every time
  });
});

describe("the student's outputs on a validation batch", () => {
  it('are the same encoded a few rows at a time (as long sequences are) as in one piece', async () => {
    await selectBackend('cpu');
    const student = initStudentFromTeacher(TINY, readEncoderConfig(TINY), defaultStudentLayers(4), 0);
    // 7 rows of 24 tokens, the last rows padded; masked and real rows spread over every row (b·T + t, ascending).
    const [B, T] = [7, 24];
    const ids = Int32Array.from({ length: B * T }, (_, i) => 101 + ((i * 7919) % 5000));
    const mask = Int32Array.from({ length: B * T }, (_, i) => (i % T < T - (i / T >= 5 ? 9 : 0) ? 1 : 0));
    const realRows = Int32Array.from([...mask.keys()].filter((i) => mask[i] === 1));
    const maskedRows = realRows.filter((_, j) => j % 6 === 1);
    const b: EvalBatch = {
      inputIds: ids,
      attentionMask: mask,
      batchSize: B,
      seqLen: T,
      maskedRows,
      labels: new Int32Array(maskedRows.length),
      realRows,
    };
    const whole = await studentEvalModel(student, false).outputs(b); // 2^19 / 24² = 910 rows: one piece
    const inThrees = await studentEvalModel(student, false, 3 * T * T).outputs(b); // rows 0-2, 3-5, 6
    expect(whole.logits.length).toBe(maskedRows.length * student.config.vocab_size);
    expect(inThrees.logits.length).toBe(whole.logits.length);
    expect(inThrees.hidden.length).toBe(realRows.length * student.config.dim);
    // Each row is encoded alone either way (attention stays within a sequence): the same float32 products, which a
    // BLAS may block differently for fewer rows, so the sums may differ in their last bits: within 1e-5 of each
    // value's scale (float32's epsilon is 1.2e-7, over sums of at most 4 × 192 products). A row taken from the
    // wrong place differs by the values themselves.
    const close = (a: Float32Array, b: Float32Array): number =>
      a.reduce((worst, x, i) => Math.max(worst, Math.abs(x - b[i]!) / (1 + Math.abs(b[i]!))), 0);
    expect(close(inThrees.logits, whole.logits)).toBeLessThan(1e-5);
    expect(close(inThrees.hidden, whole.hidden)).toBeLessThan(1e-5);
    // The probes' features of the same student: its last hidden states, in threes and in one piece.
    const dir = join(mkdtempSync(join(tmpdir(), 'distill-rows-')), 'student');
    saveStudent(student, dir);
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(TINY, f), join(dir, f));
    const [ones, threes] = [await studentEncoder(dir, 'cpu'), await studentEncoder(dir, 'cpu', 3 * T * T)];
    expect(close(await threes.hidden(ids, mask, B, T), await ones.hidden(ids, mask, B, T))).toBeLessThan(1e-5);
    await Promise.all([ones.close(), threes.close()]);
    student.dispose();
  });
});

describe('validation metrics', () => {
  // V = 3, two masked positions, H = 2, two real tokens. Model logits: row 0 [0, ln 2, 0] → q = (1/4, 1/2, 1/4),
  // label 1: −log q = ln 2, argmax 1 (right); row 1 [ln 3, 0, 0] → q = (3/5, 1/5, 1/5), label 2: −log q = ln 5,
  // argmax 0 (wrong). Teacher: row 0 the same logits (KL 0, agrees); row 1 [0, 0, ln 3] → p = (1/5, 1/5, 3/5),
  // KL(p‖q) = 1/5 ln(1/3) + 3/5 ln 3 = 2/5 ln 3, argmax 2 (disagrees). Hidden: cos((1,0),(1,0)) = 1,
  // cos((1,1),(−1,1)) = 0.
  const model = {
    logits: Float32Array.from([0, Math.LN2, 0, Math.log(3), 0, 0]),
    hidden: Float32Array.from([1, 0, 1, 1]),
  };
  const teacher = {
    logits: Float32Array.from([0, Math.LN2, 0, 0, 0, Math.log(3)]),
    hidden: Float32Array.from([1, 0, -1, 1]),
  };
  const labels = Int32Array.from([1, 2]);

  it('equal the values worked out by hand', () => {
    const sums = emptySums();
    addBatch(sums, model, teacher, labels, 3, 2, 1);
    const m = metricsOf(sums, true);
    expect(m.val_loss).toBeCloseTo((Math.LN2 + Math.log(5)) / 2, 6); // float32 logits: 1e-6
    expect(m.val_ppl).toBeCloseTo(Math.sqrt(10), 5);
    expect(m.val_acc).toBe(0.5);
    expect(m.val_agree).toBe(0.5);
    expect(m.val_kl).toBeCloseTo(((2 / 5) * Math.log(3)) / 2, 6);
    expect(m.val_cos).toBeCloseTo(0.5, 12);
    expect([m.val_masked, m.val_sequences]).toEqual([2, 1]);
    // Without a teacher the teacher's metrics are null, the others the same.
    const alone = emptySums();
    addBatch(alone, model, undefined, labels, 3, 2, 1);
    expect(metricsOf(alone, false)).toMatchObject({
      val_loss: m.val_loss,
      val_acc: 0.5,
      val_agree: null,
      val_kl: null,
      val_cos: null,
    });
  });

  it("sums of two ranks' halves, added as the all-reduce adds them, give the metrics of the whole", () => {
    const whole = emptySums();
    addBatch(whole, model, teacher, labels, 3, 2, 1);
    const half = (i: number) => ({
      logits: model.logits.slice(3 * i, 3 * i + 3),
      hidden: model.hidden.slice(2 * i, 2 * i + 2),
    });
    const halfT = (i: number) => ({
      logits: teacher.logits.slice(3 * i, 3 * i + 3),
      hidden: teacher.hidden.slice(2 * i, 2 * i + 2),
    });
    const [a, b] = [emptySums(), emptySums()];
    addBatch(a, half(0), halfT(0), labels.slice(0, 1), 3, 2, 1);
    addBatch(b, half(1), halfT(1), labels.slice(1), 3, 2, 0);
    const reduced = packSums(a).map((x, i) => x + packSums(b)[i]!);
    expect(metricsOf(unpackSums(reduced), true)).toEqual(metricsOf(whole, true));
  });

  it('refuse logits of the wrong shape, naming both', () => {
    expect(() =>
      addBatch(emptySums(), { logits: new Float32Array(5), hidden: model.hidden }, undefined, labels, 3, 2, 1),
    ).toThrow(/5 values, expected \[2, 3\]/);
  });
});

describe('validation in train, distill eval', () => {
  const work = mkdtempSync(join(tmpdir(), 'distill-eval-'));
  const configPath = join(work, 'config.json');
  const config = (extra: Record<string, unknown> = {}): TrainConfig =>
    loadConfig(
      configPath,
      Object.entries(extra).map(([k, v]) => `${k}=${JSON.stringify(v)}`),
    );
  const valLines = (runDir: string): { step: number; val_loss: number; [k: string]: number }[] =>
    readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { step: number; val_loss: number })
      .filter((l) => 'val_loss' in l);
  const whole = join(work, 'whole');
  const split = join(work, 'split');

  beforeAll(async () => {
    // All of Moby Dick in sequences of up to 32 tokens: three record batches of 4096, so one can be held back.
    const text = join(work, 'moby.txt');
    writeFileSync(text, publicDomainParagraphs('moby-dick').join('\n') + '\n');
    writeFileSync(
      configPath,
      JSON.stringify({
        teacher: TINY,
        corpus: join(work, 'corpus'),
        corpus_inputs: [text],
        max_length: 32,
        batch_size: 4,
        grad_accum: 1,
        max_steps: 20,
        checkpoint_every: 10,
        keep_checkpoints: 10,
        backend: 'wasm',
        teacher_threads: 1,
        seed: 7,
        valid_fraction: 0.3,
        eval_every: 10,
        eval_sequences: 32,
      }),
    );
    await train({ config: config(), runDir: whole, resume: false });
    await train({ config: config(), runDir: split, resume: false, stopAfter: 10 });
    await train({ config: config(), runDir: split, resume: true });
  }, 240_000);

  it('holds back whole record batches, chosen by the seed: the training reader never reads them', () => {
    const c = config();
    const options = { batchSize: 4, rank: 0, world: 1, seed: 7, bucketWidth: 4, padId: 0 };
    const all = new CorpusReader(c.corpus, options);
    const trainPart = new CorpusReader(c.corpus, { ...options, heldOut: { fraction: 0.3, part: 'train' } });
    const validPart = new CorpusReader(c.corpus, { ...options, heldOut: { fraction: 0.3, part: 'valid' } });
    const units = all.recordBatches();
    expect(units.length).toBeGreaterThanOrEqual(3);
    expect(validPart.recordBatches().length).toBe(Math.round(0.3 * units.length));
    expect(validPart.recordBatches().filter((u) => trainPart.recordBatches().includes(u))).toEqual([]);
    expect([...trainPart.recordBatches(), ...validPart.recordBatches()].sort()).toEqual([...units].sort());
    expect(trainPart.sequences + validPart.sequences).toBe(all.sequences);
    // The choice depends on the seed alone (so a resumed run holds back the same ones), and differs across seeds.
    expect([...heldOutUnits(units.length, 0.3, 7)]).toEqual([...heldOutUnits(units.length, 0.3, 7)]);
    const choices = new Set([1, 2, 3, 4, 5, 6, 7, 8].map((seed) => [...heldOutUnits(units.length, 0.3, seed)].join()));
    expect(choices.size).toBeGreaterThan(1);
    expect(() => heldOutUnits(1, 0.1, 7)).toThrow(
      /^valid_fraction 0.1 holds back 1 of the corpus's 1 record batches .*leaving none to train on/,
    ); // a corpus of one record batch cannot be split
    // named as the user gave it
    expect(() => heldOutUnits(1, 0.1, 7, '--valid-fraction')).toThrow(/^--valid-fraction 0.1 holds back/);
  });

  it('logs val_* lines every eval_every updates and at the end; a run stopped and resumed logs the same values', () => {
    const a = valLines(whole);
    expect(a.map((l) => l.step)).toEqual([10, 20]);
    expect(a[1]!.val_loss).toBeLessThan(a[0]!.val_loss); // the student learns
    for (const l of a) {
      expect(l.val_ppl).toBeCloseTo(Math.exp(l.val_loss), 9);
      for (const k of ['val_acc', 'val_agree', 'val_cos'] as const) expect(l[k]).toBeGreaterThan(0);
      expect(l.val_kl).toBeGreaterThan(0);
      expect(l.val_sequences).toBe(32);
    }
    expect(valLines(split)).toEqual(a);
  });

  it('keeps the lowest val_loss as checkpoints/best, and a resumed run goes on tracking it', async () => {
    expect(readTrainerState(bestCheckpointDir(split)).best).toEqual({
      step: 20,
      val_loss: valLines(split)[1]!.val_loss,
    });
    // Resume with a learning rate far too high: the later evaluations are worse, so best stays at update 20.
    await train({
      config: config({ lr: 0.05, max_steps: 40, divergence_factor: 0 }),
      overridden: ['lr', 'max_steps', 'divergence_factor'],
      runDir: split,
      resume: true,
    });
    const lines = valLines(split);
    expect(lines.map((l) => l.step)).toEqual([10, 20, 30, 40]);
    const lowest = lines.reduce((m, l) => (l.val_loss < m.val_loss ? l : m));
    expect(lowest.step).toBe(20); // the premise: lr 0.05 made it worse
    const best = readTrainerState(bestCheckpointDir(split));
    expect(best.step).toBe(20);
    expect(best.best).toEqual({ step: 20, val_loss: lowest.val_loss });
    expect(
      readFileSync(join(bestCheckpointDir(split), 'model.safetensors')).equals(
        readFileSync(join(split, 'checkpoints', 'step-00000020', 'model.safetensors')),
      ),
    ).toBe(true);
    expect(readTrainerState(join(split, 'checkpoints', 'step-00000040')).best).toEqual({
      step: 20,
      val_loss: lowest.val_loss,
    });
  }, 120_000);

  it(
    'distill eval gives a checkpoint the metrics train logged, ' +
      'and its ONNX export the same within 1e-4 (perplexity: relative)',
    () => {
      const checkpoint = join(whole, 'checkpoints', 'step-00000020');
      const args = [
        '--teacher',
        TINY,
        '--corpus',
        config().corpus,
        '--valid-fraction',
        '0.3',
        '--seed',
        '7',
        '--sequences',
        '32',
      ];
      const r = runCli(['eval', '--model', checkpoint, ...args]);
      expect(r.status, r.stderr).toBe(0);
      const tfjs = JSON.parse(r.stdout) as Record<string, number>;
      const logged = valLines(whole)[1]!;
      for (const k of ['val_loss', 'val_acc', 'val_agree', 'val_kl', 'val_cos', 'val_masked'] as const)
        expect(tfjs[k], k).toBeCloseTo(logged[k]!, 5);
      const onnxDir = join(work, 'onnx');
      expect(runCli(['export', '--student', checkpoint, '--out', onnxDir]).status).toBe(0);
      const o = runCli(['eval', '--model', onnxDir, ...args]);
      expect(o.status, o.stderr).toBe(0);
      const onnx = JSON.parse(o.stdout) as Record<string, number | string>;
      expect(onnx['runtime']).toBe('onnxruntime');
      // Two runtimes, two summation orders: float32 rounding (2⁻²⁴ relative per operation) moves each metric by far
      // less than 1e-4 (the losses here are ~6, where 1e-4 is ~200 float32 ulps). Perplexity is exp(val_loss), ~400
      // here: its error is relative (Δppl/ppl ≈ Δval_loss), so it is held to 1e-4 relative, not absolute (an
      // absolute 1e-4 asked ~3 ulps of it, which one machine's kernels met and another's did not).
      for (const k of ['val_loss', 'val_acc', 'val_agree', 'val_kl', 'val_cos'] as const)
        expect(Math.abs((onnx[k] as number) - tfjs[k]!), k).toBeLessThan(1e-4);
      expect(Math.abs((onnx['val_ppl'] as number) - tfjs['val_ppl']!) / tfjs['val_ppl']!, 'val_ppl').toBeLessThan(1e-4);
    },
    120_000,
  );

  it('distill eval of the teacher against itself: agreement 1, KL 0, cosine 1', () => {
    const r = runCli(['eval', '--model', TINY, '--teacher', TINY, '--corpus', config().corpus, '--sequences', '32']);
    expect(r.status, r.stderr).toBe(0);
    const m = JSON.parse(r.stdout) as Record<string, number>;
    expect(m['val_agree']).toBe(1);
    expect(Math.abs(m['val_kl']!)).toBeLessThan(1e-9); // the same logits on both sides: every term is 0
    expect(m['val_cos']).toBeCloseTo(1, 6);
    expect(m['val_loss']).toBeGreaterThan(0);
  });

  it(
    'distill eval names what is wrong, with a hint and no stack trace: ' +
      'no corpus there, a corpus of another vocabulary',
    () => {
      expectCleanError(
        runCli(['eval', '--model', TINY, '--corpus', join(work, 'nothing-here')]),
        /nothing-here\/meta\.json: missing: not a prepared corpus/,
      );
      const other = join(work, 'other-vocab');
      expect(runCli(['make-teacher', '--shape', 'tiny', '--out', other, '--seed', '3']).status).toBe(0);
      expectCleanError(
        runCli(['eval', '--model', other, '--corpus', config().corpus, '--sequences', '8']),
        /prepared with another tokenizer than the model's/,
      );
    },
  );
});
