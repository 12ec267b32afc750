import { describe, expect, it, vi } from 'vitest';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { publicDomainParagraphs, spamAssassinMails } from '../corpus/public-domain.js';
import { libraryEncode, WordPieceTokenizer } from '../corpus/tokenizer.js';
import { SafetensorsFile } from '../src/core/safetensors.js';
import { GOLDEN, REPO, TINY } from './helpers.js';
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
  it("gives Python's ids for the fixture sentences (tokenizer.json)", () => {
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

  // tokenizeToIds tokenizes a BERT text chunk by chunk (split at spaces, tabs and line breaks) and remembers each
  // chunk's ids; the tokenizers library itself, given the whole text (wholeTextIds), is the reference.
  const TRICKY = [
    'ΟΔΟΣ ΟΔΟΣ. σοφός Σ ΑΣ ΑΣ, Σ',
    'naïve café Ångström résumé cafe\u0301 \u0301x e\u0301\u0323',
    'a\u00a0b c\u3000d e\u2028f \ufeffg',
    '東京タワー is 東京 in 日本語',
    'a\u0000b\u0007c x\u200dy \ufffdz',
    'a\tb\r\nc\n\nd\r',
    'the [MASK]. x[MASK]y [MASK][MASK] [mask]',
    '🐋 whale🐳 🐋🐋',
    'x'.repeat(99) + ' ' + 'y'.repeat(101) + ' ' + 'z'.repeat(70) + '.',
    '  hello  ',
    '',
    '   ',
    '...!!!???',
    "don't U.S.A. 3.14 $5,000",
    '\ud800abc \udc00 abc\ud800',
    'Ahab Ahab. Ahab, "Ahab" (Ahab) Ahab\'s',
    // printable ASCII, the direct path's ground: every punctuation character, ## in text, words at and past 100
    // characters, digits inside words, a DEL character, special tokens' texts in both cases and glued to words
    '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~ a##b ##s # ## x'.repeat(2),
    'a'.repeat(100) + '! ' + 'B'.repeat(101) + ' 3rd 1984ers ABC123def',
    'a\u007fb [UNK] [unk] [CLS]x [SEP][PAD] y[MASK]. [Mask]',
  ];
  const texts = [
    ...TRICKY,
    ...TRICKY,
    ...publicDomainParagraphs('moby-dick').slice(0, 400),
    ...spamAssassinMails()
      .slice(0, 150)
      .map((m) => m.text),
  ];

  for (const variant of ['cased', 'uncased'] as const) {
    it(
      `gives, chunk by chunk, the ids of the whole text (${variant}: ` +
        `mail, Moby Dick, accents, final sigma, CJK, controls, [MASK])`,
      () => {
        const tj = JSON.parse(readFileSync(join(TINY, 'tokenizer.json'), 'utf8')) as {
          normalizer: Record<string, unknown>;
        };
        const config = JSON.parse(readFileSync(join(TINY, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
        if (variant === 'uncased') Object.assign(tj.normalizer, { lowercase: true, strip_accents: null });
        const dir = mkdtempSync(join(tmpdir(), `distill-chunks-${variant}-`));
        writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tj));
        writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
        const tok = WordPieceTokenizer.fromDir(dir);
        expect(tok.tokenizesByChunk).toBe(true);
        for (const text of texts)
          expect(tok.tokenizeToIds(text), JSON.stringify(text.slice(0, 80))).toEqual(tok.wholeTextIds(text));
      },
    );
  }

  // A chunk of printable ASCII not seen before is tokenized without the library (corpus/ascii-wordpiece.ts). Above it
  // runs inside tokenizeToIds; here on every distinct chunk on its own,
  // and on a vocabulary built to exercise WordPiece.
  it("tokenizes printable-ASCII chunks directly, with the library's ids (cased, uncased, vocab.txt)", () => {
    const chunks = [...new Set(texts.flatMap((t) => t.split(/[ \t\n\r]+/)))].filter((c) => c !== '');
    const uncasedJson = mkdtempSync(join(tmpdir(), 'distill-ascii-uncased-'));
    const tj = JSON.parse(readFileSync(join(TINY, 'tokenizer.json'), 'utf8')) as {
      normalizer: Record<string, unknown>;
    };
    Object.assign(tj.normalizer, { lowercase: true, strip_accents: null });
    writeFileSync(join(uncasedJson, 'tokenizer.json'), JSON.stringify(tj));
    copyFileSync(join(TINY, 'tokenizer_config.json'), join(uncasedJson, 'tokenizer_config.json'));
    const uncasedVocab = mkdtempSync(join(tmpdir(), 'distill-ascii-vocab-'));
    copyFileSync(join(TINY, 'vocab.txt'), join(uncasedVocab, 'vocab.txt'));
    writeFileSync(join(uncasedVocab, 'tokenizer_config.json'), JSON.stringify({ do_lower_case: true }));
    for (const dir of [TINY, uncasedJson, uncasedVocab]) {
      const tok = WordPieceTokenizer.fromDir(dir);
      let direct = 0;
      for (const chunk of chunks) {
        const ids = tok.asciiChunkIds(chunk);
        if (ids === undefined) continue;
        direct++;
        expect(ids, `${dir}: ${JSON.stringify(chunk)}`).toEqual(tok.wholeTextIds(chunk));
      }
      // Chunks left to the library: those with a character outside 21–7E or a special token's text.
      const left = chunks.filter((c) => /[^\x21-\x7e]/.test(c) || /\[(UNK|CLS|SEP|PAD|MASK)\]/.test(c)).length;
      expect(direct).toBe(chunks.length - left);
    }
  });

  it(
    'splits words into the longest pieces, whole-word [UNK] and ' +
      '100-character limit included (a vocabulary made for it)',
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'distill-ascii-wp-'));
      const vocab = [
        '[PAD]',
        '[UNK]',
        '[CLS]',
        '[SEP]',
        '[MASK]',
        'un',
        'unaff',
        '##aff',
        '##able',
        '##a',
        '##b',
        'a',
        'b',
        '!',
        '##!',
        'x',
        '##x',
        'hello',
        '[',
        ']',
      ];
      writeFileSync(join(dir, 'vocab.txt'), vocab.join('\n') + '\n');
      writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ do_lower_case: true }));
      const tok = WordPieceTokenizer.fromDir(dir);
      const id = (t: string): number => vocab.indexOf(t);
      const cases: [string, number[]][] = [
        ['UnAffable', [id('unaff'), id('##able')]], // longest first piece (unaff, not un), then ## pieces
        ['unaffablez', [id('[UNK]')]], // one piece missing: the whole word is [UNK]
        ['unaffable!!', [id('unaff'), id('##able'), id('!'), id('!')]], // punctuation stands alone, never ##!
        ['ab!x', [id('a'), id('##b'), id('!'), id('x')]],
        ['x'.repeat(100), [id('x'), ...Array<number>(99).fill(id('##x'))]],
        ['x'.repeat(101), [id('[UNK]')]],
        ['[hello]', [id('['), id('hello'), id(']')]],
        ['a#b', [id('a'), id('[UNK]'), id('b')]],
      ];
      for (const [chunk, expected] of cases) {
        expect(tok.asciiChunkIds(chunk), chunk).toEqual(expected);
        expect(tok.wholeTextIds(chunk), chunk).toEqual(expected);
      }
      expect(tok.asciiChunkIds('[MASK]x')).toBeUndefined();
      expect(tok.asciiChunkIds('caf\u00e9')).toBeUndefined();
    },
  );

  it("leaves to the library a chunk holding an added token's text, as written or normalised", () => {
    const tj = JSON.parse(readFileSync(join(TINY, 'tokenizer.json'), 'utf8')) as {
      normalizer: Record<string, unknown>;
      added_tokens: unknown[];
    };
    Object.assign(tj.normalizer, { lowercase: true, strip_accents: null });
    // A non-special added token matched after normalisation: "Ahab" and "AHAB" become "ahab" and are split out.
    tj.added_tokens.push({
      id: 6143,
      content: 'ahab',
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: true,
      special: false,
    });
    // A piece that is an added token's normalised text without being in the chunk: "##S" normalises to "##s", which
    // the vocabulary has under another id; the library gives the added token's.
    // One whose normalised text spans pieces: "X-Ray" normalises to "x-ray", split out whole before pre-tokenizing.
    tj.added_tokens.push({
      id: 6141,
      content: 'x-ray',
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: true,
      special: false,
    });
    tj.added_tokens.push({
      id: 6142,
      content: '##S',
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: true,
      special: false,
    });
    const dir = mkdtempSync(join(tmpdir(), 'distill-ascii-added-'));
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tj));
    copyFileSync(join(TINY, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
    const tok = WordPieceTokenizer.fromDir(dir);
    for (const chunk of ['Ahab', "AHAB's", 'xahabx', '(ahab)', 'Harpoons', 'oceans', 'X-Ray!']) {
      expect(tok.asciiChunkIds(chunk), chunk).toBeUndefined();
      expect(tok.tokenizeToIds(chunk), chunk).toEqual(tok.wholeTextIds(chunk));
    }
    expect(tok.wholeTextIds('xahabx')).toContain(6143);
    expect(tok.wholeTextIds('Harpoons').at(-1)).toBe(6142);
    expect(tok.wholeTextIds('X-Ray!')[0]).toBe(6141);
    expect(tok.asciiChunkIds('Ishmael')).toEqual(tok.wholeTextIds('Ishmael'));
  });

  it(
    'tokenizes whole texts where a chunk might not stand alone ' +
      '(another pre-tokenizer, an added token with a space)',
    () => {
      for (const change of [
        (tj: Record<string, unknown>) => {
          tj['pre_tokenizer'] = { type: 'Whitespace' };
        },
        (tj: Record<string, unknown>) => {
          (tj['added_tokens'] as unknown[]).push({
            id: 6143,
            content: 'New York',
            single_word: false,
            lstrip: false,
            rstrip: false,
            normalized: false,
            special: false,
          });
        },
      ]) {
        const tj = JSON.parse(readFileSync(join(TINY, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
        change(tj);
        const dir = mkdtempSync(join(tmpdir(), 'distill-whole-'));
        writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tj));
        copyFileSync(join(TINY, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
        expect(WordPieceTokenizer.fromDir(dir).tokenizesByChunk).toBe(false);
      }
      expect(WordPieceTokenizer.fromDir(join(REPO, 'test', 'fixtures', 'unseen-bert-uncased')).tokenizesByChunk).toBe(
        true,
      ); // vocab.txt
    },
  );

  it('names the file when a special token is not in the vocabulary, or no tokenizer exists', () => {
    const dir = mkdtempSync(join(tmpdir(), 'distill-nomask-'));
    writeFileSync(join(dir, 'vocab.txt'), ['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'a'].join('\n'));
    writeFileSync(join(dir, 'tokenizer_config.json'), '{}');
    expect(() => WordPieceTokenizer.fromDir(dir)).toThrow(
      /tokenizer_config\.json: the mask token "\[MASK\]" is not in the vocabulary/,
    );
    const empty = mkdtempSync(join(tmpdir(), 'distill-empty-'));
    expect(() => WordPieceTokenizer.fromDir(empty)).toThrow(/tokenizer\.json: missing, and so is vocab\.txt/);
  });
});

describe("tokenizer.json's post-processor", () => {
  /** A copy of the tiny teacher's tokenizer files with `post_processor` replaced. */
  function withPostProcessor(postProcessor: unknown): string {
    const dir = mkdtempSync(join(tmpdir(), 'distill-post-'));
    for (const f of ['vocab.txt', 'tokenizer_config.json', 'special_tokens_map.json'])
      copyFileSync(join(TINY, f), join(dir, f));
    const tj = JSON.parse(readFileSync(join(TINY, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({ ...tj, post_processor: postProcessor }));
    return dir;
  }
  /** What Hugging Face's tokenizers give with add_special_tokens, from the tokenizer.json distill would write. */
  function libraryIds(tok: WordPieceTokenizer, text: string, pair?: string): number[] {
    return libraryEncode(tok.tokenizerJson().json, text, pair);
  }
  const text = reference.sentences[0]!;

  it("follows the teacher's own (BERT's): the library and distill give the same ids", () => {
    const tok = WordPieceTokenizer.fromDir(TINY);
    expect(tok.info.postProcessor).toBe('file');
    expect(tok.tokenizerJson().postProcessorAdded).toBe(false);
    expect(libraryIds(tok, text)).toEqual(tok.encode(text));
    expect(libraryIds(tok, 'a b', 'c')).toEqual([2, ...tok.tokenizeToIds('a b'), 3, ...tok.tokenizeToIds('c'), 3]);
  });

  it("adds BERT's to a file without one, and says so once, naming the file", () => {
    const dir = withPostProcessor(null);
    const notes: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s) => {
      notes.push(String(s));
      return true;
    });
    try {
      const tok = WordPieceTokenizer.fromDir(dir);
      WordPieceTokenizer.fromDir(dir);
      expect(tok.info.postProcessor).toBe('added');
      expect(tok.tokenizerJson().postProcessorAdded).toBe(true);
      expect(tok.encode(text)).toEqual(referenceRow(0));
      expect(libraryIds(tok, text)).toEqual(referenceRow(0)); // the copy an export writes: [CLS] … [SEP]
    } finally {
      spy.mockRestore();
    }
    expect(notes).toHaveLength(1);
    expect(notes[0]).toContain(`note: ${join(dir, 'tokenizer.json')} has no post-processor`);
  });

  it("writes BERT's into the tokenizer.json made for a vocab.txt folder", () => {
    const dir = mkdtempSync(join(tmpdir(), 'distill-vocab-'));
    copyFileSync(join(TINY, 'vocab.txt'), join(dir, 'vocab.txt'));
    copyFileSync(join(TINY, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
    const tok = WordPieceTokenizer.fromDir(dir);
    expect(tok.info.postProcessor).toBe('vocab');
    expect(libraryIds(tok, text)).toEqual(referenceRow(0));
  });

  it('refuses one that gives another form, naming the file, the field and what it gives', () => {
    const roberta = {
      type: 'TemplateProcessing',
      single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 0 } },
      ],
      special_tokens: { '[SEP]': { id: '[SEP]', ids: [3], tokens: ['[SEP]'] } },
    };
    const dir = withPostProcessor(roberta);
    expect(() => WordPieceTokenizer.fromDir(dir)).toThrow(
      new RegExp(
        `${join(dir, 'tokenizer.json').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: field "post_processor" gives ` +
          `"A \\[SEP\\]" for one sequence and "A \\[SEP\\] B" for a pair; distill feeds BERT's "\\[CLS\\] A \\[SEP\\]"`,
      ),
    );
  });
});
