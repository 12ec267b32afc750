// GLUE parsing, GLUE's metrics on hand-checked examples,
// the built-in tasks, and a probe that beats the majority class.
import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { emailText, loadTask, writeProbeData } from '../src/probe/tasks.js';
import { accuracy, f1, majorityBaseline, matthews, pearson, spearman } from '../src/probe/metrics.js';
import { extractFeatures, teacherEncoder } from '../src/probe/features.js';
import { linearProbe, ridgeRegression } from '../src/probe/linear.js';
import { TINY } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'distill-probe-'));

describe('GLUE metrics', () => {
  it('match hand-computed values', () => {
    const gold = ['1', '1', '0', '0', '1', '0'];
    const pred = ['1', '0', '0', '1', '1', '0'];
    expect(accuracy(pred, gold)).toBeCloseTo(4 / 6, 12);
    // tp 2, fp 1, fn 1 → F1 = 4 / 6
    expect(f1(pred, gold)).toBeCloseTo(2 / 3, 12);
    // tp 2, tn 2, fp 1, fn 1 → (4 − 1) / sqrt(3·3·3·3) = 1/3
    expect(matthews(pred, gold)).toBeCloseTo(1 / 3, 12);
    expect(matthews(['1', '1'], ['1', '1'])).toBe(0); // undefined → 0, as sklearn
    expect(pearson([1, 2, 3, 4], [2, 4, 6, 8])).toBeCloseTo(1, 12);
    expect(pearson([1, 2, 3], [3, 2, 1])).toBeCloseTo(-1, 12);
    // Spearman with a tie: ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4] → r = 0.9486832980505138
    expect(spearman([10, 20, 20, 30], [1, 2, 3, 4])).toBeCloseTo(0.9486832980505138, 12);
  });

  it('ridge regression recovers a linear rule', () => {
    const x = Array.from({ length: 50 }, (_, i) => Float64Array.from([Math.sin(i), Math.cos(3 * i)]));
    const y = x.map((v) => 2 * v[0]! - v[1]! + 0.5);
    const pred = ridgeRegression(x, y, 1e-6, [Float64Array.from([1, 1])]);
    expect(pred[0]).toBeCloseTo(1.5, 4);
  });
});

describe('GLUE files', () => {
  it('parse with headers, pairs, no quote processing, CoLA without header, STS-B as regression', () => {
    const mrpc = join(work, 'MRPC');
    mkdirSync(mrpc, { recursive: true });
    const rows =
      'Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said "hi\tShe said "bye" there\n0\t3\t4\tA\tB\n';
    writeFileSync(join(mrpc, 'train.tsv'), rows);
    writeFileSync(join(mrpc, 'dev.tsv'), rows);
    const t = loadTask(mrpc);
    expect(t.spec.metrics).toEqual(['accuracy', 'f1']);
    expect(t.train[0]).toEqual({ texts: ['He said "hi', 'She said "bye" there'], label: '1' });
    expect(t.classes).toEqual(['0', '1']);

    const cola = join(work, 'CoLA');
    mkdirSync(cola, { recursive: true });
    writeFileSync(
      join(cola, 'train.tsv'),
      'gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\ngj04\t0\t*\tThe more books.\n',
    );
    writeFileSync(join(cola, 'dev.tsv'), 'gj04\t1\t\tA sentence.\n');
    expect(loadTask(cola).train[1]).toEqual({ texts: ['The more books.'], label: '0' });

    const sts = join(work, 'STS-B');
    mkdirSync(sts, { recursive: true });
    const header = 'index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n';
    writeFileSync(
      join(sts, 'train.tsv'),
      `${header}0\tmain\tf\t2012\t1\tnone\tnone\tA plane is taking off.\tAn air plane is taking off.\t5.000\n`,
    );
    writeFileSync(join(sts, 'dev.tsv'), `${header}0\tmain\tf\t2012\t1\tnone\tnone\tA man.\tA woman.\t1.5\n`);
    const s = loadTask(sts);
    expect(s.spec.kind).toBe('regression');
    expect(s.dev[0]).toEqual({ texts: ['A man.', 'A woman.'], label: '1.5' });

    const mnli = join(work, 'MNLI');
    mkdirSync(mnli, { recursive: true });
    writeFileSync(join(mnli, 'train.tsv'), 'index\tsentence1\tsentence2\tgold_label\n0\ta\tb\tneutral\n');
    expect(() => loadTask(mnli)).toThrow(/dev_matched\.tsv: missing/);
    const broken = join(work, 'RTE');
    mkdirSync(broken, { recursive: true });
    writeFileSync(join(broken, 'train.tsv'), 'index\tsentence1\tsentence2\tlabel\n0\tonly one column\n');
    writeFileSync(join(broken, 'dev.tsv'), 'index\tsentence1\tsentence2\tlabel\n');
    expect(() => loadTask(broken)).toThrow(/train\.tsv:2: 2 columns, expected at least 4/);
  });
});

describe('built-in probe tasks', () => {
  const dir = join(work, 'builtin');
  it('are written deterministically in GLUE layout', () => {
    const summary = writeProbeData(dir, 60);
    expect(summary).toEqual([
      { task: 'spam-ham', train: 120, dev: 60 },
      { task: 'next-passage', train: 120, dev: 60 },
    ]);
    const first = readFileSync(join(dir, 'spam-ham', 'train.tsv'), 'utf8');
    writeProbeData(join(work, 'again'), 60);
    expect(readFileSync(join(work, 'again', 'spam-ham', 'train.tsv'), 'utf8')).toBe(first);
    expect(first.split('\n')[0]).toBe('sentence\tlabel');
    expect(loadTask(join(dir, 'next-passage')).train[0]!.texts.length).toBe(2);
    expect(emailText('From: a\nSubject: Cheap pills\n\n<b>Buy</b>\tnow\n')).toBe('Cheap pills. Buy now');
  });

  it(
    'keep dev apart from train and every class balanced, ' +
      'at the default size and a small one; refuse more than they hold',
    () => {
      for (const perClass of [400, 61]) {
        const out = join(work, `balanced-${perClass}`);
        writeProbeData(out, perClass);
        for (const name of ['spam-ham', 'next-passage']) {
          const task = loadTask(join(out, name));
          const count = (rows: { label: string }[], label: string): number =>
            rows.filter((e) => e.label === label).length;
          expect([count(task.train, '0'), count(task.train, '1')], `${name} train`).toEqual([perClass, perClass]);
          expect([count(task.dev, '0'), count(task.dev, '1')], `${name} dev`).toEqual([
            Math.ceil(perClass / 2),
            Math.ceil(perClass / 2),
          ]);
          // No text of dev in train: not a row, and (next-passage) not a passage.
          const trainTexts = new Set(task.train.flatMap((e) => e.texts));
          expect(
            task.dev.filter((e) => e.texts.some((t) => trainTexts.has(t))),
            name,
          ).toEqual([]);
        }
      }
      expect(() => writeProbeData(join(work, 'too-many'), 100_000)).toThrow(
        /--per-class 100000: the built-in tasks hold at most \d+ training examples per class/,
      );
    },
  );

  it("the teacher's linear probe on spam-ham clearly beats the majority class", async () => {
    const task = loadTask(join(dir, 'spam-ham'));
    const enc = await teacherEncoder(TINY, 1);
    const train = await extractFeatures(
      enc,
      task.train.map((e) => e.texts),
      'mean',
    );
    const dev = await extractFeatures(
      enc,
      task.dev.map((e) => e.texts),
      'mean',
    );
    await enc.close();
    const { metrics } = linearProbe(task, train.features, dev.features);
    const majority = majorityBaseline(task).accuracy!;
    expect(majority).toBeLessThanOrEqual(0.6);
    expect(metrics.accuracy!).toBeGreaterThan(majority + 0.2);
  });
});

describe('fine-tuning mode', () => {
  it(
    'fine-tunes a copy of the student with a head and beats ' +
      'the majority class, leaving the student folder as it was',
    async () => {
      const { finetuneStudent } = await import('../src/probe/finetune.js');
      const student = join(work, 'student');
      const { runCli } = await import('./cli-helpers.js');
      expect(runCli(['init-student', '--teacher', TINY, '--out', student]).status).toBe(0);
      const before = readFileSync(join(student, 'model.safetensors'));
      const dir = join(work, 'builtin');
      const task = loadTask(join(dir, 'spam-ham'));
      task.train = task.train.slice(0, 96);
      const { metrics } = await finetuneStudent(student, task, {
        epochs: 3,
        lr: 1e-3,
        batchSize: 16,
        pooling: 'mean',
        seed: 17,
        backend: 'wasm',
      });
      expect(metrics.accuracy!).toBeGreaterThan(majorityBaseline(task).accuracy! + 0.05);
      expect(readFileSync(join(student, 'model.safetensors')).equals(before)).toBe(true);
    },
  );
});
