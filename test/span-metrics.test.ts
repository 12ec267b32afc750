// The span tasks' metrics (src/probe/span-metrics.ts) on cases worked by hand and on the examples their reference
// implementations publish: seqeval's README and SQuAD v1.1's evaluate-v1.1.py definitions.
import { describe, expect, it } from 'vitest';
import { answerScores, entities, entityScores, normalizeAnswer, tagScheme } from '../src/probe/span-metrics.js';

describe('named entities, as seqeval scores them', () => {
  it("seqeval's README example: F1 0.50, accuracy 0.80", () => {
    const gold = [
      ['O', 'O', 'O', 'B-MISC', 'I-MISC', 'I-MISC', 'O'],
      ['B-PER', 'I-PER', 'O'],
    ];
    const predicted = [
      ['O', 'O', 'B-MISC', 'I-MISC', 'I-MISC', 'I-MISC', 'O'],
      ['B-PER', 'I-PER', 'O'],
    ];
    const s = entityScores(gold, predicted);
    // Gold: MISC(3..5), PER(8..9) over the joined sentences; predicted MISC(2..5) is wrong, PER right: 1 of 2 each.
    expect(s).toEqual({ precision: 0.5, recall: 0.5, f1: 0.5, accuracy: 0.8 });
  });

  it('a partial overlap counts as wrong (first and last token and type must all match)', () => {
    const s = entityScores([['B-PER', 'I-PER', 'I-PER', 'O', 'B-LOC']], [['B-PER', 'I-PER', 'O', 'O', 'B-LOC']]);
    // Predicted PER(0..1) against gold PER(0..2): wrong; LOC right. Precision 1/2, recall 1/2; tokens 4 of 5.
    expect(s).toEqual({ precision: 0.5, recall: 0.5, f1: 0.5, accuracy: 0.8 });
    // A wrong type on the right span is wrong too.
    expect(entityScores([['B-PER', 'I-PER']], [['B-ORG', 'I-ORG']]).f1).toBe(0);
  });

  it('reads IOB1 and IOB2 alike, and says which the gold tags use', () => {
    const iob1 = ['I-PER', 'I-PER', 'O', 'I-LOC', 'I-LOC', 'B-LOC'];
    const iob2 = ['B-PER', 'I-PER', 'O', 'B-LOC', 'I-LOC', 'B-LOC'];
    const want = [
      { type: 'PER', start: 0, end: 1 },
      { type: 'LOC', start: 3, end: 4 },
      { type: 'LOC', start: 5, end: 5 }, // IOB1's B- separates two adjacent entities of one type
    ];
    expect(entities(iob1)).toEqual(want);
    expect(entities(iob2)).toEqual(want);
    expect(tagScheme([iob1])).toBe('IOB1');
    expect(tagScheme([iob2])).toBe('IOB2');
    expect(tagScheme([['O', 'I-PER'], ['B-PER']])).toBe('IOB1');
    expect(tagScheme([['S-PER', 'O', 'B-LOC', 'E-LOC']])).toBe('IOBES');
    // An I- after another type starts a new entity (seqeval's default mode), in either scheme.
    expect(entities(['B-PER', 'I-LOC'])).toEqual([
      { type: 'PER', start: 0, end: 0 },
      { type: 'LOC', start: 1, end: 1 },
    ]);
  });

  it('no entity predicted: precision, recall and F1 0 (as seqeval, without dividing by zero)', () => {
    expect(entityScores([['B-PER', 'O']], [['O', 'O']])).toEqual({ precision: 0, recall: 0, f1: 0, accuracy: 0.5 });
  });
});

describe("extractive QA, as SQuAD v1.1's evaluation", () => {
  it('normalises: lower case, punctuation and articles removed, whitespace collapsed', () => {
    expect(normalizeAnswer('The  Cat, sat!')).toBe('cat sat');
    expect(normalizeAnswer('An apple a day')).toBe('apple day');
    expect(normalizeAnswer('theater')).toBe('theater'); // whole words only
    expect(normalizeAnswer("O'Neil's (1999)")).toBe('oneils 1999');
  });

  it('exact match and F1, each the best over several gold answers', () => {
    expect(answerScores('the Eiffel Tower', ['Eiffel Tower', 'tower'])).toEqual({ exact: 1, f1: 1 });
    // "eiffel tower in paris" vs "eiffel tower": 2 common tokens, precision 2/4, recall 2/2 → F1 2/3.
    const s = answerScores('Eiffel tower in Paris', ['the Eiffel Tower', 'Paris, France']);
    expect(s.exact).toBe(0);
    expect(s.f1).toBeCloseTo(2 / 3, 12); // better than "paris france": 1 common, P 1/4, R 1/2 → 1/3
    expect(answerScores('', ['Paris'])).toEqual({ exact: 0, f1: 0 }); // the empty answer
    // Repeated words count once per occurrence in both (Counter intersection).
    expect(answerScores('to to to', ['to be']).f1).toBeCloseTo((2 * (1 / 3) * (1 / 2)) / (1 / 3 + 1 / 2), 12);
  });
});
