// Extractive QA's pieces (src/probe/qa.ts): SQuAD v1.1 files read and refused, contexts cut into pieces and
// windows (an answer across a window boundary), the best span mapped back to the context's characters.
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { answerPieces, bestSpan, loadSquadTask, pieceContext, readSquad, windows } from '../src/probe/qa.js';
import { encodeQa, goldRows, scoredPositions } from '../src/probe/qa-probe.js';
import { WordPieceTokenizer } from '../corpus/tokenizer.js';
import { probeFixtures, probeOneTask } from './cli-helpers.js';
import { TINY } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'distill-qa-'));
const CONTEXT = 'The quick brown fox jumps over the lazy dog in 1999.';

function squad(answerStart: number, text = 'brown fox'): string {
  const path = join(work, `squad-${answerStart}.json`);
  const qas = [
    {
      id: 'q1',
      question: 'Who jumps?',
      answers: [
        { text, answer_start: answerStart },
        { text: 'fox', answer_start: 16 },
      ],
    },
  ];
  writeFileSync(
    path,
    JSON.stringify({ version: '1.1', data: [{ title: 't', paragraphs: [{ context: CONTEXT, qas }] }] }),
  );
  return path;
}

describe('SQuAD v1.1 files', () => {
  it('reads each question with its context and every gold answer', () => {
    expect(readSquad(squad(10))).toEqual([
      {
        id: 'q1',
        question: 'Who jumps?',
        context: CONTEXT,
        answers: [
          { text: 'brown fox', start: 10 },
          { text: 'fox', start: 16 },
        ],
      },
    ]);
  });

  it('refuses an answer_start that does not point at its text, an empty or non-JSON file, naming the place', () => {
    expect(() => readSquad(squad(11))).toThrow(
      /squad-11\.json: data\[0\]\.paragraphs\[0\]\.qas\[0\]\.answers\[0\]: "answer_start" 11 does not point at its text "brown fox" \(the context there reads "rown fox "\)/,
    );
    const empty = join(work, 'empty.json');
    writeFileSync(empty, '');
    expect(() => readSquad(empty)).toThrow(/empty\.json: not JSON/);
    const none = join(work, 'none.json');
    writeFileSync(none, '{"data": []}');
    expect(() => readSquad(none)).toThrow(/none\.json: no "data" array, or an empty one/);
  });
});

describe('pieces and windows', () => {
  // A tokenizer that cuts each word into pieces of 3 characters: "quick" → 2 pieces, "1999" → 2 ("." is a word).
  const tokenize = (w: string): number[] =>
    Array.from({ length: Math.ceil(w.length / 3) }, (_, i) => w.length * 10 + i);

  it('keeps each piece with its word and each word with its characters; an answer maps to its pieces', () => {
    const c = pieceContext(CONTEXT, tokenize);
    // The 1 | quick 2 | brown 2 | fox 1 | jumps 2 | over 2 | the 1 | lazy 2 | dog 1 | in 1 | 1999 2 | . 1 = 18
    expect(c.ids.length).toBe(18);
    expect(c.word.slice(0, 5)).toEqual([0, 1, 1, 2, 2]);
    expect(c.chars[2]).toEqual([10, 15]); // "brown"
    expect(answerPieces(c, 10, 'brown fox'.length)).toEqual([3, 5]); // brown's 2 pieces, fox's 1
  });

  it('cuts a context three windows long; an answer across a boundary is marked only where it is whole', () => {
    // 30 pieces, windows of 12 every 9: [0, 12), [9, 21), [18, 30).
    const across = windows(30, 12, 9, [10, 13]); // crosses the first window's end (12)
    expect(across).toEqual([
      { start: 0, end: 12 },
      { start: 9, end: 21, answer: [1, 4] },
      { start: 18, end: 30 },
    ]);
    // In the overlap of the second and third windows: marked in both.
    expect(windows(30, 12, 9, [19, 20]).map((w) => w.answer)).toEqual([undefined, [10, 11], [1, 2]]);
    expect(windows(5, 12, 9)).toEqual([{ start: 0, end: 5 }]); // a short context: one window
  });

  it('the best span: the highest start + end score, start ≤ end, at most maxLength pieces, as whole words', () => {
    const c = pieceContext(CONTEXT, tokenize);
    const w = { start: 0, end: 18 };
    const start = new Array(18).fill(0);
    const end = new Array(18).fill(0);
    start[4] = 5; // the second piece of "brown"
    end[5] = 5; // "fox"
    end[1] = 8; // before the start: (4, 1) is no span; (0, 1) scores only 8
    expect(bestSpan(c, w, start, end, 30)).toMatchObject({ first: 4, last: 5, text: 'brown fox' });
    start[16] = 4.5;
    end[16] = 4.5; // (16, 16) scores 9, (4, 16) 9.5: both under 10
    expect(bestSpan(c, w, start, end, 30).text).toBe('brown fox');
    start[15] = 6; // (15, 16) scores 10.5: both pieces of one word, "1999" (its "." is a word apart)
    expect(bestSpan(c, w, start, end, 30)).toMatchObject({ first: 15, last: 16, text: '1999' });
    // At most one piece: (16, 16) at 9 beats (15, 15) at 6, (4, 4) and (5, 5) at 5, (1, 1) at 8.
    expect(bestSpan(c, w, start, end, 1)).toMatchObject({ first: 16, last: 16 });
  });
});

describe('distill probe on the built-in us-states-qa task (SQuAD layout, windows over long passages)', () => {
  let tasks: string;
  let student: string;
  beforeAll(() => {
    ({ tasks, student } = probeFixtures(work, TINY));
  }, 120_000);

  it('encodes each question with its passage in windows of the model positions; the gold pieces are the answer', () => {
    const task = loadSquadTask(join(tasks, 'us-states-qa'));
    const tok = WordPieceTokenizer.fromDir(TINY);
    const qa = encodeQa(tok, task.train.slice(0, 40), 128);
    expect(qa.inputs.length).toBeGreaterThan(40); // passages of ~160 words need more than one window
    for (const x of qa.inputs) {
      expect(x.ids.length).toBeLessThanOrEqual(128);
      const [s, e] = goldRows(x);
      if (s === 0) continue; // the answer is not wholly in this window: [CLS]
      const rows = scoredPositions(x);
      const answer = task.train[x.example]!.answers[0]!.text;
      expect(x.ids.slice(rows[s]!, rows[e]! + 1)).toEqual(tok.tokenizeToIds(answer));
    }
  });

  it('linear heads and the fine-tuned student each answer far better than the empty answer (F1 0)', () => {
    // Guessing one word of a ~160-word passage finds the state about 1 time in 100 (F1 ≈ 0.01-0.02): F1 above
    // 0.4 is over 20× that; the trivial baseline, the empty answer, scores 0.
    for (const mode of [
      ['--mode', 'linear'],
      ['--mode', 'finetune', '--epochs', '3', '--lr', '0.001'],
    ]) {
      const task = join(tasks, 'us-states-qa');
      const { metrics: m, table } = probeOneTask(TINY, student, task, join(work, `qa-${mode[1]}.json`), [
        ...mode,
        '--limit',
        '120',
      ]);
      expect(m.majority).toEqual({ exact_match: 0, answer_f1: 0 });
      expect(m.teacher['answer_f1'], mode[1]).toBeGreaterThan(0.4);
      expect(m.student['answer_f1'], mode[1]).toBeGreaterThan(0.4);
      expect(table).toMatch(/\| us-states-qa \(dev 60\) \| answer_f1 \| \d+\.\d \| \d+\.\d \| \d+\.\d% \| 0\.0 \|/);
      // A finetune run also reports the linear heads on both models' frozen features, as a row of its own.
      expect(table.includes('| us-states-qa (linear heads) (dev 60) | answer_f1 |'), mode[1]).toBe(
        mode[1] === 'finetune',
      );
    }
  }, 900_000);
});
