// Token classification as a probe task (src/probe/ner.ts): CoNLL files read (and refused with file:line), the
// built-in us-states task, the per-word linear probe on hand-made features, and `distill probe` on the built-in
// task with the tiny teacher and its student, each far above the majority tag.
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConllTask, nerLinearProbe, readConll, writeStatesTask, type NerTask } from '../src/probe/ner.js';
import { probeFixtures, probeOneTask } from './cli-helpers.js';
import { TINY } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'distill-ner-'));

/** A CoNLL-2003-like file: word POS chunk NER. */
const CONLL = `-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
`;

describe('CoNLL files', () => {
  it('reads sentences between blank lines, skips -DOCSTART-, takes the last column or --tag-column', () => {
    const path = join(work, 'a.txt');
    writeFileSync(path, CONLL);
    expect(readConll(path)).toEqual([
      { words: ['EU', 'rejects', 'German', 'call'], tags: ['B-ORG', 'O', 'B-MISC', 'O'] },
      { words: ['Peter', 'Blackburn'], tags: ['B-PER', 'I-PER'] },
    ]);
    expect(readConll(path, 1)[1]!.tags).toEqual(['NNP', 'NNP']); // the POS column
  });

  it('refuses a ragged line, an empty file and a dev tag train lacks, naming the file (and line)', () => {
    const ragged = join(work, 'ragged.txt');
    writeFileSync(ragged, 'EU NNP B-NP B-ORG\nrejects O\n');
    expect(() => readConll(ragged)).toThrow(/ragged\.txt:2: 2 columns where the file's first token line has 4/);
    const empty = join(work, 'empty.txt');
    writeFileSync(empty, '\n\n');
    expect(() => readConll(empty)).toThrow(/empty\.txt: no sentences/);
    const dir = join(work, 'task');
    mkdirSync(dir);
    writeFileSync(join(dir, 'train.txt'), CONLL);
    writeFileSync(join(dir, 'valid.txt'), 'Paris NNP B-NP B-LOC\n');
    expect(() => loadConllTask(dir)).toThrow(/valid\.txt: tag "B-LOC" does not occur in train\.txt/);
    writeFileSync(join(dir, 'valid.txt'), 'Peter NNP B-NP B-PER\n');
    const t = loadConllTask(dir);
    expect([t.tags, t.scheme, t.dev.length]).toEqual([['B-MISC', 'B-ORG', 'B-PER', 'I-PER', 'O'], 'IOB2', 1]);
  });
});

describe('the built-in us-states task', () => {
  it('tags every real occurrence of a state, two-word states as B-LOC I-LOC, nothing else', () => {
    const dir = join(work, 'us-states');
    const n = writeStatesTask(dir, 300);
    expect(n).toEqual({ train: 240, dev: 60 });
    const train = readConll(join(dir, 'train.txt'));
    const states = new Set(['New York', 'Texas', 'California', 'Virginia', 'Ohio']);
    let twoWord = 0;
    for (const s of train) {
      s.tags.forEach((t, i) => {
        if (t === 'B-LOC' && s.tags[i + 1] === 'I-LOC') twoWord++;
        if (t === 'I-LOC') expect(s.tags[i - 1]).toBe('B-LOC');
      });
      expect(s.tags.some((t) => t === 'B-LOC')).toBe(true);
      // A listed state in the text is always tagged.
      s.words.forEach((w, i) => {
        const inWestVirginia = w === 'Virginia' && s.words[i - 1] === 'West'; // I-LOC of "West Virginia"
        if ((states.has(w) && !inWestVirginia) || (w === 'New' && s.words[i + 1] === 'York'))
          expect(s.tags[i]).toBe('B-LOC');
      });
    }
    expect(twoWord).toBeGreaterThan(0);
    writeStatesTask(join(work, 'again'), 300); // seeded: the same files again
    expect(readFileSync(join(work, 'again', 'dev.txt'), 'utf8')).toBe(readFileSync(join(dir, 'dev.txt'), 'utf8'));
  });
});

describe('the per-word linear probe', () => {
  it('predicts perfectly from features that encode the tag, and scores as seqeval', () => {
    const tags = ['B-PER', 'I-PER', 'O'];
    const sentence = (t: string[]): { words: string[]; tags: string[] } => ({ words: t.map(() => 'w'), tags: t });
    const s1 = ['B-PER', 'I-PER', 'O', 'O'];
    const s2 = ['O', 'B-PER', 'O'];
    const task: NerTask = {
      kind: 'ner',
      name: 't',
      dir: work,
      train: Array.from({ length: 10 }, (_, i) => sentence(i % 2 ? s1 : s2)),
      dev: [sentence(s1), sentence(s2)],
      tags,
      scheme: 'IOB2',
    };
    const oneHot = (t: string): Float32Array => Float32Array.from(tags, (x) => (x === t ? 1 : 0));
    const features = (set: { tags: string[] }[]): Float32Array[][] => set.map((s) => s.tags.map(oneHot));
    expect(nerLinearProbe(task, features(task.train), features(task.dev))).toEqual({
      entity_f1: 1,
      entity_precision: 1,
      entity_recall: 1,
      token_accuracy: 1,
    });
    // A word without features (past the model's positions) gets the majority tag, O: PER(0..1) is then missed.
    const dev = features(task.dev);
    (dev[0] as (Float32Array | undefined)[])[0] = undefined;
    const m = nerLinearProbe(task, features(task.train), dev);
    // The lone I-PER after O starts an entity PER(1..1) (seqeval), which is wrong: 1 of 2 predicted, 1 of 2 gold.
    expect([m.entity_precision, m.entity_recall, m.token_accuracy]).toEqual([0.5, 0.5, 6 / 7]);
  });
});

describe('distill probe on the built-in us-states task', () => {
  let tasks: string;
  let student: string;
  beforeAll(() => {
    ({ tasks, student } = probeFixtures(work, TINY));
  }, 120_000);

  it('teacher and student each find the states far better than the majority tag (entity F1 0)', () => {
    const { metrics: m, table } = probeOneTask(TINY, student, join(tasks, 'us-states'), join(work, 'report.json'), [
      '--limit',
      '300',
    ]);
    expect(m.majority['entity_f1']).toBe(0); // O everywhere finds no entity
    // Guessing: tagging each word B-LOC with the dev set's rate of entity words q gives precision ≈ q and recall
    // ≈ q, so F1 ≈ q (about 0.05 here: a state in a sentence of ~25 words). The states are a closed set of
    // capitalised names that both models' features separate: F1 above 0.5 is over 5× guessing.
    const dev = readConll(join(tasks, 'us-states', 'dev.txt')).slice(0, 150);
    const q = dev.flatMap((s) => s.tags).filter((t) => t !== 'O').length / dev.flatMap((s) => s.tags).length;
    expect(q).toBeLessThan(0.1);
    expect(m.teacher['entity_f1']).toBeGreaterThan(0.5);
    expect(m.student['entity_f1']).toBeGreaterThan(0.5);
    expect(table).toMatch(/\| us-states \(dev 150, IOB2\) \| entity_f1 \| \d+\.\d \| \d+\.\d \| \d+\.\d% \| 0\.0 \|/);
  }, 600_000);

  it('--mode finetune: the student fine-tuned with a tag head finds the states too (the teacher linearly)', () => {
    const { metrics: m, mode } = probeOneTask(TINY, student, join(tasks, 'us-states'), join(work, 'ft.json'), [
      '--mode',
      'finetune',
      '--epochs',
      '3',
      '--lr',
      '0.001',
      '--limit',
      '300',
    ]);
    expect(mode).toBe('finetune');
    // The same margin as the linear probe's: over 5× a guess at the entity rate (F1 ≈ q < 0.1).
    expect(m.teacher['entity_f1']).toBeGreaterThan(0.5);
    expect(m.student['entity_f1']).toBeGreaterThan(0.5);
  }, 600_000);
});
