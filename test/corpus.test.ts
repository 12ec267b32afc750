// distill prepare, the shard reader and DistilBERT masking.
import { beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RecordBatchReader } from 'apache-arrow';
import { WordPieceTokenizer } from '../corpus/tokenizer.js';
import {
  lineToSequences,
  prepareCorpus,
  readCorpusMeta,
  readTokenCounts,
  type PrepareOptions,
} from '../corpus/prepare.js';
import { CorpusReader, type GlobalBatch } from '../corpus/reader.js';
import { maskBatch, RECIPE_MASKING, tokenWeights } from '../corpus/masking.js';
import { Rng } from '../corpus/rng.js';
import { publicDomainParagraphs } from '../corpus/public-domain.js';
import { SafetensorsFile } from '../src/core/safetensors.js';
import { runCli } from './cli-helpers.js';
import { GOLDEN, TINY } from './helpers.js';
import reference from './fixtures/tiny-bert-cased/reference.json' with { type: 'json' };

const tok = WordPieceTokenizer.fromDir(TINY);
const work = mkdtempSync(join(tmpdir(), 'distill-corpus-'));
const base = (outDir: string, inputs: string[], extra: Partial<PrepareOptions> = {}): PrepareOptions => ({
  outDir,
  inputs,
  maxLength: 128,
  shardSequences: 500,
  onBadLine: 'error',
  ...extra,
});

function shardRows(dir: string): number[][] {
  const meta = readCorpusMeta(dir);
  return meta.shards.flatMap((s) =>
    [...RecordBatchReader.from(readFileSync(join(dir, s.file)))].flatMap((rb) => {
      const col = rb.getChild('input_ids')!;
      return Array.from({ length: rb.numRows }, (_, i) => [...(col.get(i) as { toArray(): Int32Array }).toArray()]);
    }),
  );
}

// A corpus of real text: Moby Dick's paragraphs, in three files (one gzipped, one JSONL).
const mobyDir = join(work, 'moby');
beforeAll(() => {
  const paras = publicDomainParagraphs('moby-dick');
  mkdirSync(join(mobyDir, 'sub'), { recursive: true });
  writeFileSync(join(mobyDir, 'a.txt'), paras.slice(0, 900).join('\n') + '\n');
  writeFileSync(join(mobyDir, 'sub', 'b.txt.gz'), gzipSync(paras.slice(900, 1500).join('\r\n')));
  writeFileSync(
    join(mobyDir, 'c.jsonl'),
    paras
      .slice(1500, 2000)
      .map((text) => JSON.stringify({ text }))
      .join('\n') + '\n',
  );
  writeFileSync(join(mobyDir, 'ignored.md'), 'not an input');
});

describe('distill prepare', () => {
  it('gives the reference input_ids for the fixture sentences', async () => {
    const file = join(work, 'ref.txt');
    writeFileSync(file, reference.sentences.join('\n') + '\n');
    const out = join(work, 'ref-out');
    const meta = await prepareCorpus(tok, base(out, [file], { minLength: 0 }));
    expect(meta.sequences.kept).toBe(4);
    const ref = SafetensorsFile.read(join(GOLDEN, 'reference.safetensors'));
    const ids = ref.getInt32('input_ids');
    const mask = ref.getInt32('attention_mask');
    const T = ref.shapeOf('input_ids')[1]!;
    const expected = [0, 1, 2, 3].map((b) =>
      [...ids.subarray(b * T, (b + 1) * T)].filter((_, t) => mask[b * T + t] === 1),
    );
    expect(shardRows(out)).toEqual(expected);
  });

  it('cuts long lines into re-wrapped chunks of max_length − 2, as the reference does', () => {
    const pieces = Array.from({ length: 25 }, (_, i) => 100 + i);
    // [CLS] + 25 + [SEP] = 27 ids, cut every 10: [CLS p0..p8] gains [SEP];
    // [p9..p18] gains both; [p19..p24 SEP] gains [CLS].
    const chunks = lineToSequences(pieces, tok, 12);
    expect(chunks.map((c) => c.length)).toEqual([11, 12, 8]);
    for (const c of chunks) expect([c[0], c[c.length - 1]]).toEqual([tok.clsId, tok.sepId]);
    expect(chunks.flatMap((c) => c.slice(1, -1))).toEqual(pieces);
    expect(lineToSequences([7, 8], tok, 12)).toEqual([[tok.clsId, 7, 8, tok.sepId]]);
  });

  it('prepares real text (txt, txt.gz, jsonl) with counts, drops and byte-identical reruns', async () => {
    const a = join(work, 'moby-a');
    const b = join(work, 'moby-b');
    const meta = await prepareCorpus(tok, base(a, [mobyDir]));
    await prepareCorpus(tok, base(b, [mobyDir]));
    expect(meta.inputs.map((i) => i.path.split('/').slice(-1)[0])).toEqual(['a.txt', 'c.jsonl', 'b.txt.gz']);
    expect(meta.lines_read).toBe(2000);
    expect(
      meta.sequences.kept + meta.sequences.dropped_too_short + meta.sequences.dropped_unknown,
    ).toBeGreaterThanOrEqual(2000 - meta.empty_lines);
    expect(meta.sequences.dropped_too_short).toBeGreaterThan(0);
    expect(meta.shards.length).toBe(Math.ceil(meta.sequences.kept / 500));
    const rows = shardRows(a);
    expect(rows.length).toBe(meta.sequences.kept);
    expect(
      rows.every((r) => r.length >= 12 && r.length <= 128 && r[0] === tok.clsId && r[r.length - 1] === tok.sepId),
    ).toBe(true);
    const counts = readTokenCounts(a);
    expect(counts[tok.clsId]).toBe(meta.sequences.kept);
    expect(counts.reduce((x, y) => x + y, 0)).toBe(meta.tokens);
    for (const s of meta.shards) expect(readFileSync(join(a, s.file)).equals(readFileSync(join(b, s.file)))).toBe(true);
    expect(
      readFileSync(join(a, 'token_counts.safetensors')).equals(readFileSync(join(b, 'token_counts.safetensors'))),
    ).toBe(true);
    // A second run on a complete folder is a no-op.
    expect((await prepareCorpus(tok, base(a, [mobyDir]))).fingerprint).toBe(meta.fingerprint);
  });

  it('continues an interrupted run from its last complete shard, to the same bytes', async () => {
    const clean = join(work, 'clean');
    const metaClean = await prepareCorpus(tok, base(clean, [mobyDir], { shardSequences: 300 }));
    const broken = join(work, 'broken');
    await expect(
      prepareCorpus(
        tok,
        base(broken, [mobyDir], {
          shardSequences: 300,
          onShardWritten: (i) => {
            if (i === 2) throw new Error('simulated crash');
          },
        }),
      ),
    ).rejects.toThrow('simulated crash');
    expect(existsSync(join(broken, 'meta.json'))).toBe(false); // never looks complete
    writeFileSync(join(broken, 'shard-00003.arrow.tmp-4242'), 'half a shard');
    let written = 0;
    const meta = await prepareCorpus(
      tok,
      base(broken, [mobyDir], {
        shardSequences: 300,
        onShardWritten: () => {
          written++;
        },
      }),
    );
    expect(written).toBe(metaClean.shards.length - 3); // shards 0..2 were kept
    expect(readdirSync(broken).some((f) => f.includes('.tmp-'))).toBe(false);
    expect(meta.shards).toEqual(metaClean.shards);
    expect(meta.sequences).toEqual(metaClean.sequences);
    for (const s of meta.shards)
      expect(readFileSync(join(broken, s.file)).equals(readFileSync(join(clean, s.file)))).toBe(true);
    expect(
      readFileSync(join(broken, 'token_counts.safetensors')).equals(
        readFileSync(join(clean, 'token_counts.safetensors')),
      ),
    ).toBe(true);
  });

  // Tokenizing on worker threads: batches of 40 texts go to the workers in turn and come back in order, so every
  // file (shards, token counts, meta.json) is the one a single thread writes, bad lines and interruptions included.
  it('writes the same bytes with tokenizing threads, skipped lines and an interruption included', async () => {
    const dir = join(work, 'threads-in');
    mkdirSync(dir, { recursive: true });
    const paras = publicDomainParagraphs('moby-dick');
    const bad = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // latin-1 "café": not UTF-8
    writeFileSync(
      join(dir, 'a.txt'),
      Buffer.concat([
        Buffer.from(paras.slice(0, 700).join('\n') + '\n\n'),
        bad,
        Buffer.from('\n' + paras.slice(700, 1200).join('\n')),
      ]),
    );
    writeFileSync(
      join(dir, 'b.jsonl'),
      paras
        .slice(1200, 1800)
        .map((text, i) => (i % 97 === 5 ? '{"text": broken' : JSON.stringify({ text })))
        .join('\n') + '\n',
    );
    writeFileSync(join(dir, 'c.txt.gz'), gzipSync(paras.slice(1800).join('\n')));
    // Each file's name and sha256 (toEqual on the Buffers themselves compares byte by byte, for seconds).
    const files = (d: string): string[] =>
      readdirSync(d)
        .sort()
        .map(
          (f) =>
            `${f} ${createHash('sha256')
              .update(readFileSync(join(d, f)))
              .digest('hex')}`,
        );
    const opts = (out: string, extra: Partial<PrepareOptions>): PrepareOptions =>
      base(join(work, out), [dir], { shardSequences: 250, onBadLine: 'skip', batchTexts: 40, ...extra });
    const single = await prepareCorpus(tok, opts('threads-0', { workers: 0 }));
    expect(single.skipped).toEqual({ invalid_utf8: 1, binary: 0, bad_json: 7, too_long: 0 });
    expect(single.shards.length).toBeGreaterThan(8);
    const three = await prepareCorpus(tok, opts('threads-3', { workers: 3 }));
    expect(three).toEqual(single);
    expect(files(join(work, 'threads-3'))).toEqual(files(join(work, 'threads-0')));
    // Interrupted after shard 4 with two threads, continued with three.
    await expect(
      prepareCorpus(
        tok,
        opts('threads-cut', {
          workers: 2,
          onShardWritten: (i) => {
            if (i === 4) throw new Error('simulated crash');
          },
        }),
      ),
    ).rejects.toThrow('simulated crash');
    await prepareCorpus(tok, opts('threads-cut', { workers: 3 }));
    expect(files(join(work, 'threads-cut'))).toEqual(files(join(work, 'threads-0')));
    // A bad line stops the run at its file and line, as on one thread.
    await expect(prepareCorpus(tok, opts('threads-stop', { workers: 2, onBadLine: 'error' }))).rejects.toThrow(
      /a\.txt:702: not valid UTF-8/,
    );
    // A thread that cannot load the tokenizer (its folder emptied after this thread loaded it) is an error, not a hang.
    const gone = mkdtempSync(join(tmpdir(), 'distill-gone-'));
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'config.json'])
      writeFileSync(join(gone, f), readFileSync(join(TINY, f)));
    const goneTok = WordPieceTokenizer.fromDir(gone);
    rmSync(join(gone, 'tokenizer.json'));
    await expect(prepareCorpus(goneTok, opts('threads-gone', { workers: 2 }))).rejects.toThrow(
      /tokenizer worker failed: .*tokenizer\.json: missing/,
    );
  });

  it('names the file and line of bad input, or skips and counts it', async () => {
    const dir = join(work, 'bad');
    mkdirSync(dir, { recursive: true });
    const good = 'Call me Ishmael. Some years ago, never mind how long precisely, I went to sea.';
    writeFileSync(
      join(dir, 'binary.txt'),
      Buffer.concat([Buffer.from(`${good}\n`), Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x00, 0x00, 0x0a])]),
    );
    await expect(prepareCorpus(tok, base(join(work, 'o1'), [join(dir, 'binary.txt')]))).rejects.toThrow(
      /binary\.txt:2: a NUL byte/,
    );
    writeFileSync(
      join(dir, 'latin1.txt'),
      Buffer.concat([Buffer.from(`${good}\n${good}\n`), Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a])]),
    );
    await expect(prepareCorpus(tok, base(join(work, 'o2'), [join(dir, 'latin1.txt')]))).rejects.toThrow(
      /latin1\.txt:3: not valid UTF-8/,
    );
    writeFileSync(
      join(dir, 'broken.jsonl'),
      `${JSON.stringify({ text: good })}\n{"text": "unterminated\n${JSON.stringify({ body: good })}\n`,
    );
    await expect(prepareCorpus(tok, base(join(work, 'o3'), [join(dir, 'broken.jsonl')]))).rejects.toThrow(
      /broken\.jsonl:2: not valid JSON/,
    );
    const skipped = await prepareCorpus(
      tok,
      base(join(work, 'o4'), [join(dir, 'broken.jsonl'), join(dir, 'latin1.txt'), join(dir, 'binary.txt')], {
        onBadLine: 'skip',
      }),
    );
    expect(skipped.skipped).toEqual({ invalid_utf8: 1, binary: 1, bad_json: 2, too_long: 0 });
    expect(skipped.sequences.kept).toBe(4);
    // A line over 1 MB is not a sequence of text: named, or skipped and counted; its bytes are dropped as they come.
    // 10 bytes over, its end in the read after 16 full ones (64 KiB each); 24 MB, across hundreds of reads; 1.5 MB at
    // the end without a line break.
    writeFileSync(
      join(dir, 'long.txt'),
      `${'x'.repeat((1 << 20) + 10)}\n${good}\n${'y'.repeat(24 << 20)}\n${good}\n${'z'.repeat(1.5 * (1 << 20))}`,
    );
    await expect(prepareCorpus(tok, base(join(work, 'o9'), [join(dir, 'long.txt')]))).rejects.toThrow(
      /long\.txt:1: longer than 1 MB without a line break/,
    );
    const long = await prepareCorpus(tok, base(join(work, 'o10'), [join(dir, 'long.txt')], { onBadLine: 'skip' }));
    expect(long.skipped).toEqual({ invalid_utf8: 0, binary: 0, bad_json: 0, too_long: 3 });
    expect(long.lines_read).toBe(5);
    expect(long.sequences.kept).toBe(2);
    writeFileSync(join(dir, 'empty.txt'), '');
    await expect(prepareCorpus(tok, base(join(work, 'o5'), [join(dir, 'empty.txt')]))).rejects.toThrow(
      /no sequences kept from 1 input file/,
    );
    mkdirSync(join(work, 'nothing'), { recursive: true });
    await expect(prepareCorpus(tok, base(join(work, 'o6'), [join(work, 'nothing')]))).rejects.toThrow(
      /nothing: the folder holds no \.txt/,
    );
    await expect(prepareCorpus(tok, base(join(work, 'o7'), [join(dir, 'notes.pdf')]))).rejects.toThrow(
      /notes\.pdf: no such file/,
    );
    mkdirSync(join(work, 'o8'), { recursive: true });
    writeFileSync(join(work, 'o8', 'meta.json'), '{"format_version": 1,');
    expect(() => readCorpusMeta(join(work, 'o8'))).toThrow(/o8\/meta\.json: not valid JSON/);
  });

  it('refuses an output folder prepared with another tokenizer (CLI)', () => {
    const other = join(work, 'uncased-tok');
    mkdirSync(other, { recursive: true });
    writeFileSync(join(other, 'vocab.txt'), readFileSync(join(TINY, 'vocab.txt')));
    writeFileSync(join(other, 'tokenizer_config.json'), JSON.stringify({ do_lower_case: true }));
    const r = runCli(['prepare', '--tokenizer', other, '--out', join(work, 'moby-a'), mobyDir]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/moby-a\/meta\.json: the corpus there was prepared with another tokenizer/);
  });
});

describe('corpus reader', () => {
  const dir = join(work, 'reader');
  beforeAll(async () => {
    await prepareCorpus(tok, base(dir, [mobyDir], { shardSequences: 400 }));
  });
  const open = (o: Partial<ConstructorParameters<typeof CorpusReader>[1]> = {}): CorpusReader =>
    new CorpusReader(dir, { batchSize: 8, rank: 0, world: 1, seed: 56, bucketWidth: 4, padId: tok.padId, ...o });
  const key = (b: GlobalBatch): string => Array.from(b.inputIds).join(',');

  it('gives length-grouped, right-padded batches covering an epoch once', () => {
    const r = open();
    const perEpoch = r.batchesPerEpoch();
    const seen: string[] = [];
    let spreadOk = 0;
    for (let i = 0; i < perEpoch; i++) {
      const b = r.next();
      expect(b.position.epoch).toBe(0);
      const lengths = Array.from({ length: b.rows }, (_, row) =>
        b.attentionMask.subarray(row * b.seqLen, (row + 1) * b.seqLen).reduce((x, y) => x + y, 0),
      );
      expect(Math.max(...lengths)).toBe(b.seqLen);
      for (let row = 0; row < b.rows; row++) {
        for (let t = lengths[row]!; t < b.seqLen; t++) expect(b.inputIds[row * b.seqLen + t]).toBe(tok.padId);
        seen.push(Array.from(b.inputIds.subarray(row * b.seqLen, row * b.seqLen + lengths[row]!)).join(','));
      }
      if (Math.max(...lengths) - Math.min(...lengths) < 8) spreadOk++;
    }
    expect(seen.length).toBe(r.sequences);
    expect([...seen].sort()).toEqual(
      shardRows(dir)
        .map((x) => x.join(','))
        .sort(),
    );
    expect(spreadOk / perEpoch).toBeGreaterThan(0.9); // grouped by 4-token buckets
    expect(r.next().position.epoch).toBe(1);
  });

  it('shuffles differently each epoch and per seed', () => {
    const r = open();
    const n = r.batchesPerEpoch();
    const e0 = Array.from({ length: n }, () => key(r.next()));
    const e1 = Array.from({ length: n }, () => key(r.next()));
    expect(e1).not.toEqual(e0);
    expect(Array.from({ length: 5 }, () => key(open({ seed: 57 }).next()))).not.toEqual(e0.slice(0, 5));
  });

  it('continues the exact batch sequence from a restored cursor', () => {
    const straight = open();
    const all = Array.from({ length: 90 }, () => key(straight.next()));
    const first = open();
    for (let i = 0; i < 37; i++) first.next();
    const resumed = open();
    resumed.restore(JSON.parse(JSON.stringify(first.cursor)) as typeof first.cursor); // as a checkpoint stores it
    expect(Array.from({ length: 53 }, () => key(resumed.next()))).toEqual(all.slice(37));
  });

  it('partitions each global batch between ranks, disjoint and covering', () => {
    const world = 3;
    const readers = Array.from({ length: world }, (_, rank) => open({ batchSize: 5, rank, world }));
    for (let i = 0; i < 20; i++) {
      const batches = readers.map((r) => r.next());
      expect(new Set(batches.map(key)).size).toBe(1); // every rank sees the same global batch
      const b = batches[0]!;
      expect(batches.map((x) => [x.rowStart, x.rowEnd])).toEqual(
        [0, 1, 2].map((r) => [Math.floor((r * b.rows) / 3), Math.floor(((r + 1) * b.rows) / 3)]),
      );
      expect(batches[world - 1]!.rowEnd).toBe(b.rows);
    }
  });
});

describe('masking', () => {
  const counts = Float64Array.from({ length: tok.vocabSize }, (_, i) => (i < 1000 ? 1000 : 1));
  const weights = tokenWeights(counts, tok.specialIds, 0.7);
  // A batch of 16 × 40 with [CLS] … [SEP] and 8 padding positions per row.
  const B = 16;
  const T = 40;
  const ids = new Int32Array(B * T);
  const mask = new Int32Array(B * T);
  const src = new Rng(3);
  for (let b = 0; b < B; b++) {
    const len = 32;
    for (let t = 0; t < len; t++) {
      ids[b * T + t] = t === 0 ? tok.clsId : t === len - 1 ? tok.sepId : 5 + src.int(tok.vocabSize - 5);
      mask[b * T + t] = 1;
    }
  }
  const real = B * 32;

  it('picks ceil(15%) of the real tokens, never specials or padding, and labels only them', () => {
    const rng = new Rng(1);
    for (let i = 0; i < 50; i++) {
      const m = maskBatch(ids, mask, weights, tok.maskId, tok.vocabSize, RECIPE_MASKING, rng);
      expect(m.targets).toBe(Math.ceil(0.15 * real));
      let labelled = 0;
      for (let p = 0; p < ids.length; p++) {
        if (m.mlmLabels[p] === -100) {
          expect(m.maskedInputIds[p]).toBe(ids[p]);
          continue;
        }
        labelled++;
        expect(m.mlmLabels[p]).toBe(ids[p]);
        expect(mask[p]).toBe(1);
        expect(tok.specialIds.has(ids[p]!)).toBe(false);
      }
      expect(labelled).toBe(m.targets);
    }
  });

  it('splits targets 80/10/10 and favours rare tokens as max(count,1)^-0.7 says', () => {
    const rng = new Rng(2);
    let maskTok = 0;
    let kept = 0;
    let other = 0;
    let rare = 0;
    let total = 0;
    for (let i = 0; i < 300; i++) {
      const m = maskBatch(ids, mask, weights, tok.maskId, tok.vocabSize, RECIPE_MASKING, rng);
      for (let p = 0; p < ids.length; p++) {
        if (m.mlmLabels[p] === -100) continue;
        total++;
        if (ids[p]! >= 1000) rare++;
        if (m.maskedInputIds[p] === tok.maskId) maskTok++;
        else if (m.maskedInputIds[p] === ids[p]) kept++;
        else other++;
      }
    }
    expect(maskTok / total).toBeGreaterThan(0.78);
    expect(maskTok / total).toBeLessThan(0.82);
    expect(kept / total).toBeGreaterThan(0.085);
    expect(kept / total).toBeLessThan(0.115);
    expect(other / total).toBeGreaterThan(0.085);
    expect(other / total).toBeLessThan(0.115);
    // Rare ids (count 1, weight 1) against common ones (count 1000, weight 1000^-0.7 ≈ 0.0079): about 5/6 of
    // the real non-special tokens are rare, and nearly every target is.
    let rareTokens = 0;
    let eligible = 0;
    for (let p = 0; p < ids.length; p++)
      if (mask[p] && !tok.specialIds.has(ids[p]!)) {
        eligible++;
        if (ids[p]! >= 1000) rareTokens++;
      }
    expect(rare / total).toBeGreaterThan(rareTokens / eligible + 0.1);
    expect(rare / total).toBeGreaterThan(0.97);
  });

  it('draws the same masks from the same RNG state', () => {
    const a = new Rng(9);
    a.next();
    const b = new Rng(a.state());
    expect(maskBatch(ids, mask, weights, tok.maskId, tok.vocabSize, RECIPE_MASKING, a)).toEqual(
      maskBatch(ids, mask, weights, tok.maskId, tok.vocabSize, RECIPE_MASKING, b),
    );
  });
});
