// The metrics of the span tasks, as their reference scripts define them.
//   Named entities, as seqeval computes them (its default, conlleval-compatible mode): entities are chunks of
//   tags; a chunk starts at B-X, at I-X after O or after another type (so IOB1 and IOB2 read alike), and at S-X
//   (IOBES); precision = correct / predicted entities, recall = correct / gold entities, F1 their harmonic mean,
//   over the whole dev set (micro). An entity is correct when its type, first and last token all match.
//   Extractive QA, as SQuAD v1.1's official evaluate-v1.1.py: answers normalised (lower case, punctuation and the
//   articles a/an/the removed, whitespace collapsed); exact match and token F1, each the best over the gold answers.

/** A tagged chunk: its type and the first and last token (inclusive), over the sentences joined. */
export interface Entity {
  type: string;
  start: number;
  end: number;
}

const split = (tag: string): { prefix: string; type: string } => {
  const prefix = tag[0] ?? 'O';
  const type = tag.slice(1).split('-').slice(1).join('-') || '_';
  return { prefix, type };
};

function endOfChunk(prev: string, tag: string, prevType: string, type: string): boolean {
  if (prev === 'E' || prev === 'S') return true;
  if ((prev === 'B' || prev === 'I') && (tag === 'B' || tag === 'S' || tag === 'O')) return true;
  return prev !== 'O' && prev !== '.' && prevType !== type;
}

function startOfChunk(prev: string, tag: string, prevType: string, type: string): boolean {
  if (tag === 'B' || tag === 'S') return true;
  if ((prev === 'E' || prev === 'S' || prev === 'O') && (tag === 'E' || tag === 'I')) return true;
  return tag !== 'O' && tag !== '.' && prevType !== type;
}

/** seqeval's get_entities over one sequence of tags (sentences joined with an O between them by the caller). */
export function entities(tags: readonly string[]): Entity[] {
  const out: Entity[] = [];
  let prev = 'O';
  let prevType = '';
  let begin = 0;
  [...tags, 'O'].forEach((tag, i) => {
    const { prefix, type } = split(tag);
    if (endOfChunk(prev, prefix, prevType, type)) out.push({ type: prevType, start: begin, end: i - 1 });
    if (startOfChunk(prev, prefix, prevType, type)) begin = i;
    prev = prefix;
    prevType = type;
  });
  return out;
}

export type TagScheme = 'IOB1' | 'IOB2' | 'IOBES';

/**
 * The tagging scheme of gold sentences: IOBES when E- or S- tags occur; IOB1 when some entity begins with I-
 * (after O, or after another type, or at a sentence's start); else IOB2.
 */
export function tagScheme(sentences: readonly (readonly string[])[]): TagScheme {
  let iob1 = false;
  for (const tags of sentences) {
    let prev = 'O';
    for (const tag of tags) {
      const p = tag[0];
      if (p === 'E' || p === 'S') return 'IOBES';
      if (p === 'I' && (prev === 'O' || split(prev).type !== split(tag).type)) iob1 = true;
      prev = tag;
    }
  }
  return iob1 ? 'IOB1' : 'IOB2';
}

export interface EntityScores {
  precision: number;
  recall: number;
  f1: number;
  /** Tokens whose predicted tag is the gold one. */
  accuracy: number;
}

/** Entity-level micro precision, recall and F1 (seqeval), and token accuracy, over sentences. */
export function entityScores(
  gold: readonly (readonly string[])[],
  predicted: readonly (readonly string[])[],
): EntityScores {
  if (gold.length !== predicted.length)
    throw new Error(`${gold.length} gold and ${predicted.length} predicted sentences`);
  const join = (s: readonly (readonly string[])[]): string[] => s.flatMap((t) => [...t, 'O']);
  const g = join(gold);
  const p = join(predicted);
  if (g.length !== p.length) throw new Error('a predicted sentence has another length than its gold one');
  const key = (e: Entity): string => `${e.type}\t${e.start}\t${e.end}`;
  const goldSet = new Set(entities(g).map(key));
  const predictedList = entities(p);
  const correct = predictedList.filter((e) => goldSet.has(key(e))).length;
  const precision = predictedList.length ? correct / predictedList.length : 0;
  const recall = goldSet.size ? correct / goldSet.size : 0;
  const tokens = gold.reduce((n, s) => n + s.length, 0);
  const right = gold.reduce((n, s, i) => n + s.filter((t, j) => t === predicted[i]![j]).length, 0);
  return {
    precision,
    recall,
    f1: precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0,
    accuracy: tokens ? right / tokens : 0,
  };
}

/** Python's string.punctuation. */
const PUNCTUATION = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~');

/** SQuAD's normalize_answer: lower case, no punctuation, no articles, whitespace collapsed. */
export function normalizeAnswer(s: string): string {
  const noPunctuation = [...s.toLowerCase()].filter((c) => !PUNCTUATION.has(c)).join('');
  return noPunctuation
    .replace(/\b(a|an|the)\b/g, ' ')
    .split(/\s+/)
    .filter((w) => w !== '')
    .join(' ');
}

/** SQuAD's f1_score of one prediction against one gold answer. */
function tokenF1(prediction: string, gold: string): number {
  const p = normalizeAnswer(prediction).split(' ').filter(Boolean);
  const g = normalizeAnswer(gold).split(' ').filter(Boolean);
  const counts = new Map<string, number>();
  for (const w of g) counts.set(w, (counts.get(w) ?? 0) + 1);
  let same = 0;
  for (const w of p) {
    const c = counts.get(w) ?? 0;
    if (c > 0) {
      same++;
      counts.set(w, c - 1);
    }
  }
  if (same === 0) return 0;
  const precision = same / p.length;
  const recall = same / g.length;
  return (2 * precision * recall) / (precision + recall);
}

/** Exact match and F1 of one prediction: each the best over the gold answers (0/1 and 0…1). */
export function answerScores(prediction: string, golds: readonly string[]): { exact: number; f1: number } {
  const n = normalizeAnswer(prediction);
  return {
    exact: golds.some((g) => normalizeAnswer(g) === n) ? 1 : 0,
    f1: Math.max(0, ...golds.map((g) => tokenF1(prediction, g))),
  };
}
