import { describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WordPieceTokenizer } from '../corpus/tokenizer.js';
import { SafetensorsFile } from '../src/core/safetensors.js';
import { GOLDEN, TINY } from './helpers.js';
import reference from './fixtures/tiny-bert-cased/reference.json' with { type: 'json' };

const ref = SafetensorsFile.read(join(GOLDEN, 'reference.safetensors'));
const [B, T] = ref.shapeOf('input_ids') as [number, number];
const refIds = ref.getInt32('input_ids');
const refMask = ref.getInt32('attention_mask');
function referenceRow(b: number): number[] {
  const row: number[] = [];
  for (let t = 0; t < T; t++) if (refMask[b * T + t]) row.push(refIds[b * T + t]!);
  return row;
}

describe('WordPiece tokenizer', () => {
  it('gives Python\'s ids for the fixture sentences (tokenizer.json)', () => {
    const tok = WordPieceTokenizer.fromDir(TINY);
    expect(tok.vocabSize).toBe(6144);
    expect(B).toBe(reference.sentences.length);
    reference.sentences.forEach((s, b) => expect(tok.encode(s)).toEqual(referenceRow(b)));
  });

  it('gives the same ids from vocab.txt + tokenizer_config.json alone', () => {
    const dir = mkdtempSync(join(tmpdir(), 'distill-vocab-'));
    copyFileSync(join(TINY, 'vocab.txt'), join(dir, 'vocab.txt'));
    copyFileSync(join(TINY, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
    const tok = WordPieceTokenizer.fromDir(dir);
    expect(tok.info.source).toMatch(/vocab\.txt$/);
    expect(tok.info.lowercase).toBe(false);
    reference.sentences.forEach((s, b) => expect(tok.encode(s)).toEqual(referenceRow(b)));
    expect(tok.vocabHash).toBe(WordPieceTokenizer.fromDir(TINY).vocabHash);
  });

  it('lower-cases and strips accents for an uncased vocabulary, keeping [MASK] whole', () => {
    const dir = mkdtempSync(join(tmpdir(), 'distill-uncased-'));
    const vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'hello', 'world', '##s', 'cafe', '.', 'the'];
    writeFileSync(join(dir, 'vocab.txt'), vocab.join('\n') + '\n');
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ do_lower_case: true }));
    const tok = WordPieceTokenizer.fromDir(dir);
    expect(tok.info).toMatchObject({ lowercase: true, stripAccents: true });
    expect(tok.encode('HÉLLO Worlds, Café.')).toEqual([2, 5, 6, 7, 1, 8, 9, 3]);
    expect(tok.tokenizeToIds(tok.normalizeMaskMarkers('the [mask] [MASK]'))).toEqual([10, 4, 4]);
    expect(tok.specialIds).toEqual(new Set([0, 1, 2, 3, 4]));
  });

  it('keeps accents and case for a cased vocabulary, defaulting to uncased without a config like transformers', () => {
    const dir = mkdtempSync(join(tmpdir(), 'distill-cased-'));
    writeFileSync(join(dir, 'vocab.txt'), ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'Café', 'cafe'].join('\n'));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ do_lower_case: false }));
    expect(WordPieceTokenizer.fromDir(dir).tokenizeToIds('Café cafe')).toEqual([5, 6]);
    const noConfig = mkdtempSync(join(tmpdir(), 'distill-noconfig-'));
    copyFileSync(join(dir, 'vocab.txt'), join(noConfig, 'vocab.txt'));
    expect(WordPieceTokenizer.fromDir(noConfig).tokenizeToIds('Café')).toEqual([6]);
  });

  it('names the file when a special token is not in the vocabulary, or no tokenizer exists', () => {
    const dir = mkdtempSync(join(tmpdir(), 'distill-nomask-'));
    writeFileSync(join(dir, 'vocab.txt'), ['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'a'].join('\n'));
    writeFileSync(join(dir, 'tokenizer_config.json'), '{}');
    expect(() => WordPieceTokenizer.fromDir(dir)).toThrow(/tokenizer_config\.json: the mask token "\[MASK\]" is not in the vocabulary/);
    const empty = mkdtempSync(join(tmpdir(), 'distill-empty-'));
    expect(() => WordPieceTokenizer.fromDir(empty)).toThrow(/tokenizer\.json: missing, and so is vocab\.txt/);
  });
});
