// Bad input ends in a DistillError naming the file, the field and a fix (exit 1), never a stack trace (exit 70),
// and leaves every folder as it was (checksums before and after). Corpora are checked when a run opens them,
// not when the reader first reaches a bad shard; batch files against the vocabulary before the teacher runs;
// probe tasks for empty files, one class and labels outside the task's set; prepare's length against the model.
import { beforeAll, describe, expect, it } from 'vitest';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  makeData,
  RecordBatch,
  RecordBatchFileWriter,
  RecordBatchReader,
  Struct,
  type Data,
  type List,
  type Int32,
} from 'apache-arrow';
import { createHash } from 'node:crypto';
import { writeSafetensors } from '../src/core/safetensors.js';
import { markFolder } from '../src/core/folders.js';
import { loadTask } from '../src/probe/tasks.js';
import { publicDomainParagraphs } from '../corpus/public-domain.js';
import { expectCleanError, runCli, type CliResult } from './cli-helpers.js';
import { REPO, TINY, folderDigest } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'distill-bad-input-'));
const text = join(work, 'moby.txt');
const corpus = join(work, 'corpus');

beforeAll(() => {
  writeFileSync(text, publicDomainParagraphs('moby-dick').slice(0, 300).join('\n') + '\n');
  // Several shards, so that the checks can name one.
  const r = runCli([
    'prepare',
    '--tokenizer',
    TINY,
    '--out',
    corpus,
    '--max-length',
    '48',
    '--shard-sequences',
    '100',
    text,
  ]);
  expect(r.status, r.stderr).toBe(0);
});

describe('a damaged corpus is named when the run opens it', () => {
  const meta = (): { shards: { file: string; sequences: number }[] } =>
    JSON.parse(readFileSync(join(corpus, 'meta.json'), 'utf8')) as { shards: { file: string; sequences: number }[] };
  /** A copy of the corpus, damaged by `damage`; `train` on it; the copy and the run folder checked unchanged. */
  function trainOnDamaged(name: string, damage: (dir: string) => void): CliResult {
    const dir = join(work, `corpus-${name}`);
    cpSync(corpus, dir, { recursive: true });
    damage(dir);
    const before = folderDigest(dir);
    const config = join(work, `config-${name}.json`);
    writeFileSync(
      config,
      JSON.stringify({
        teacher: TINY,
        corpus: dir,
        batch_size: 4,
        grad_accum: 1,
        max_steps: 1,
        backend: 'cpu',
        teacher_threads: 1,
      }),
    );
    const runDir = join(work, `run-${name}`);
    const r = runCli(['train', '--config', config, '--out', runDir]);
    expect(folderDigest(dir)).toBe(before);
    expect(existsSync(join(runDir, 'metrics.jsonl'))).toBe(false); // stopped before any update
    return r;
  }
  const second = (): string => meta().shards[1]!.file;

  it('a truncated shard', () => {
    expect(meta().shards.length).toBeGreaterThan(2); // the swapped case below needs a third
    const r = trainOnDamaged('truncated', (d) => truncateSync(join(d, second()), 5000));
    expectCleanError(
      r,
      new RegExp(
        `error: .*corpus-truncated/${second()}: 5000 bytes and no Arrow footer at its end: the file is truncated`,
      ),
    );
    expect(r.stderr).toMatch(/hint: the shard is damaged or was replaced: prepare the corpus again/);
  });

  it('a shard of garbage bytes, a missing shard, and a shard with fewer rows than meta.json says', () => {
    expectCleanError(
      trainOnDamaged('garbage', (d) => writeFileSync(join(d, second()), Buffer.alloc(4096, 0x5a))),
      /shard-00001\.arrow: not an Arrow IPC file \(no ARROW1 magic at its start\)/,
    );
    expectCleanError(
      trainOnDamaged('missing', (d) => rmSync(join(d, second()))),
      /shard-00001\.arrow: cannot open: ENOENT \(meta\.json lists it\)/,
    );
    expectCleanError(
      trainOnDamaged('empty', (d) => truncateSync(join(d, second()), 0)),
      /shard-00001\.arrow: 0 bytes: too short to be an Arrow file/,
    );
    // Another corpus's shard in its place: a valid Arrow file, but not the rows meta.json lists.
    expectCleanError(
      trainOnDamaged('swapped', (d) => copyFileSync(join(d, meta().shards.at(-1)!.file), join(d, second()))),
      new RegExp(
        `shard-00001\\.arrow: (\\d+ record batches, meta\\.json says \\d+|\\d+ sequences, meta\\.json says ` +
          `${meta().shards[1]!.sequences})`,
      ),
    );
  });

  /**
   * Record a rewritten corpus's checksums as if prepare had written it (so that the reader's own checks are reached).
   */
  const reseal = (d: string) => (): void => {
    const m = JSON.parse(readFileSync(join(d, 'meta.json'), 'utf8')) as { shards: { file: string; sha256?: string }[] };
    for (const sh of m.shards)
      sh.sha256 = createHash('sha256')
        .update(readFileSync(join(d, sh.file)))
        .digest('hex');
    writeFileSync(join(d, 'meta.json'), JSON.stringify(m, null, 1) + '\n');
    markFolder(d, 'corpus', ['meta.json', 'token_counts.safetensors']);
  };

  it('a shard rewritten after prepare (same size or not) is named by its checksum', () => {
    // One bit of every shard (the first the run reads is one of them, in the shuffled order), sizes unchanged.
    const r = trainOnDamaged('flipped', (d) =>
      meta().shards.forEach(({ file }) => {
        const bytes = readFileSync(join(d, file));
        bytes[bytes.length >> 1]! ^= 1;
        writeFileSync(join(d, file), bytes);
      }),
    );
    expectCleanError(
      r,
      /corpus-flipped\/shard-\d{5}\.arrow: its contents changed after prepare wrote it: SHA-256 [0-9a-f]{12}…, meta\.json records [0-9a-f]{12}…/,
    );
  });

  it('a token id outside the vocabulary, named with its shard and record batch before the teacher sees it', () => {
    const r = trainOnDamaged('bad-id', (d) => {
      meta().shards.forEach(({ file }) => {
        // Every shard: the first batch the run reads comes from one of them, in the shuffled order.
        const path = join(d, file);
        const batches = [...RecordBatchReader.from(readFileSync(path))];
        const rewritten = batches.map((rb, i) => {
          const list = rb.getChildAt(0)!.data[0]! as unknown as Data<List<Int32>>;
          const values = Int32Array.from(list.children[0]!.values as Int32Array);
          if (i === 0) values.fill(999_999, 0, values.length); // every id of the first record batch
          const child = makeData({ type: list.children[0]!.type as Int32, length: values.length, data: values });
          const data = makeData({
            type: list.type,
            length: list.length,
            nullCount: 0,
            valueOffsets: list.valueOffsets as Int32Array,
            child,
          });
          return new RecordBatch(
            rb.schema,
            makeData({ type: new Struct(rb.schema.fields), length: list.length, nullCount: 0, children: [data] }),
          );
        });
        writeFileSync(path, RecordBatchFileWriter.writeAll(rewritten).toUint8Array(true));
      });
      reseal(d)();
    });
    // The checks at open pass (the file is whole); the reader names the id when it reads the record batch.
    expectCleanError(r, /shard-\d{5}\.arrow: record batch 0 holds token id 999999, outside the vocabulary \(0…\d+\)/);
  });
});

describe('eval-batch checks the batch against the vocabulary before the teacher runs', () => {
  it('names the tensor, the position and the value', () => {
    const student = join(work, 'student');
    expect(runCli(['init-student', '--teacher', TINY, '--out', student, '--no-onnx']).status).toBe(0);
    const B = 2;
    const T = 6;
    const ids = Int32Array.from({ length: B * T }, (_, i) => 100 + i);
    ids[7] = 28_996_000; // row 1, position 1
    const batch = join(work, 'batch.safetensors');
    writeSafetensors(batch, {
      masked_input_ids: { data: ids, shape: [B, T], dtype: 'I32' },
      attention_mask: { data: new Int32Array(B * T).fill(1), shape: [B, T], dtype: 'I32' },
      mlm_labels: { data: new Int32Array(B * T).fill(-100), shape: [B, T], dtype: 'I32' },
    });
    const r = runCli([
      'eval-batch',
      '--teacher',
      TINY,
      '--student',
      student,
      '--batch',
      batch,
      '--backend',
      'cpu',
      '--threads',
      '1',
    ]);
    expectCleanError(
      r,
      /batch\.safetensors: masked_input_ids\[1, 1\] is 28996000, outside the vocabulary of \d+ tokens/,
    );
  });
});

describe('probe tasks', () => {
  function task(name: string, train: string, dev: string): string {
    const dir = join(work, 'tasks', name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'train.tsv'), train);
    writeFileSync(join(dir, 'dev.tsv'), dev);
    return dir;
  }
  const rows = (labels: string[]): string =>
    `sentence\tlabel\n${labels.map((l, i) => `example number ${i}\t${l}`).join('\n')}\n`;

  it(
    'an empty dev.tsv, one class, a word among whole-number labels, ' +
      "a dev label train lacks, a label outside GLUE's set",
    () => {
      expect(() => loadTask(task('empty', rows(['0', '1']), ''))).toThrow(
        /empty\/dev\.tsv: empty: no header line and no examples/,
      );
      expect(() => loadTask(task('header-only', rows(['0', '1']), 'sentence\tlabel\n'))).toThrow(
        /header-only\/dev\.tsv: no examples/,
      );
      expect(() => loadTask(task('one-class', rows(['1', '1', '1']), rows(['1'])))).toThrow(
        /one-class\/train\.tsv: every example has the label "1": a classifier needs at least two classes/,
      );
      expect(() => loadTask(task('typo', rows(['0', '1', 'spam', '0']), rows(['1'])))).toThrow(
        /typo\/train\.tsv:4: label "spam" is not a whole number like the task's other labels \(0, 1\)/,
      );
      expect(() => loadTask(task('unseen', rows(['0', '1']), rows(['0', '2'])))).toThrow(
        /unseen\/dev\.tsv:3: label "2" is not one of the task's labels \(0, 1\)/,
      );
      expect(() => loadTask(task('SST-2', rows(['0', '1', '2']), rows(['0'])))).toThrow(
        /SST-2\/train\.tsv:4: label "2" is not one of the task's labels \(0, 1\)/,
      );
      // words alone are fine
      expect(loadTask(task('words', rows(['ham', 'spam']), rows(['spam']))).classes).toEqual(['ham', 'spam']);
    },
  );

  it('from the command line: a message and a hint, no stack trace', () => {
    const r = runCli(['probe', '--teacher', TINY, '--student', TINY, '--task', join(work, 'tasks', 'empty')]);
    expectCleanError(r, /empty\/dev\.tsv: empty: no header line and no examples/);
  });
});

describe('prepare fits the sequences to the model', () => {
  it(
    "defaults --max-length to the model's positions, " + 'refuses more, and says why a too-small length keeps nothing',
    () => {
      const out = join(work, 'prep-default');
      const r = runCli(['prepare', '--tokenizer', TINY, '--out', out, text]);
      expect(r.status, r.stderr).toBe(0);
      // the tiny teacher's positions
      expect((JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8')) as { max_length: number }).max_length).toBe(128);
      expectCleanError(
        runCli(['prepare', '--tokenizer', TINY, '--out', join(work, 'prep-long'), '--max-length', '512', text]),
        /--max-length 512 is more than the 128 positions of the model in .*tiny-bert-cased/,
      );
      const short = runCli([
        'prepare',
        '--tokenizer',
        TINY,
        '--out',
        join(work, 'prep-short'),
        '--max-length',
        '3',
        text,
      ]);
      expectCleanError(
        short,
        /--max-length 3 is below --min-length 12: every sequence would be cut into pieces too short to keep/,
      );
      expect(short.stderr).toMatch(
        /hint: raise --max-length \(the model takes up to 128 tokens\) or lower --min-length/,
      );
      expect(existsSync(join(work, 'prep-long'))).toBe(false);
      // train preparing its own corpus: refused before preparing anything, not after.
      const config = join(work, 'config-long.json');
      writeFileSync(
        config,
        JSON.stringify({
          teacher: TINY,
          corpus: join(work, 'corpus-long'),
          corpus_inputs: [text],
          max_length: 512,
          max_steps: 1,
          backend: 'cpu',
        }),
      );
      expectCleanError(
        runCli(['train', '--config', config, '--out', join(work, 'run-long')]),
        /sequences of up to 512 tokens do not fit the teacher's 128 positions/,
      );
      expect(existsSync(join(work, 'corpus-long'))).toBe(false);
    },
  );

  it('takes --workers as auto or a count, and the same shards either way (CLI, two threads)', () => {
    expectCleanError(
      runCli(['prepare', '--tokenizer', TINY, '--out', join(work, 'prep-w'), '--workers', 'two', text]),
      /--workers "two": expected auto or a whole number from 0 to 256/,
    );
    const threads = join(work, 'prep-threads');
    const r = runCli(['prepare', '--tokenizer', TINY, '--out', threads, '--workers', '2', text]);
    expect(r.status, r.stderr).toBe(0);
    for (const f of ['meta.json', 'token_counts.safetensors', 'shard-00000.arrow']) {
      expect(readFileSync(join(threads, f)).equals(readFileSync(join(work, 'prep-default', f))), f).toBe(true);
    }
  });
});

describe("the recipe's config on another teacher", () => {
  it("names the config's student key, the layers the teacher has, and the choice that fits", () => {
    // configs/distilbert-base-cased.json copied as a user would, pointed at the 4-layer tiny teacher.
    const recipe = JSON.parse(readFileSync(join(REPO, 'configs', 'distilbert-base-cased.json'), 'utf8')) as object;
    const config = join(work, 'recipe-on-tiny.json');
    const corpus = join(work, 'corpus-recipe');
    writeFileSync(config, JSON.stringify({ ...recipe, teacher: TINY, corpus, corpus_inputs: [text], backend: 'cpu' }));
    const r = runCli(['train', '--config', config, '--out', join(work, 'run-recipe'), '--max-steps', '1']);
    expectCleanError(r, /student \(config\): teacher layer 4 does not exist \(the teacher has layers 0\.\.3\)/);
    expect(r.stderr).toMatch(/hint: give layers of this teacher, e\.g\. \[0, 3\] \(half its depth, evenly spaced/);
    expect(existsSync(join(work, 'run-recipe', 'checkpoints'))).toBe(false);
  });
});

describe('folders are never overwritten without asking', () => {
  it(
    'export refuses a folder it did not make, even with --force; ' +
      'an earlier export is moved aside with --force, byte for byte',
    () => {
      const student = join(work, 'student-x');
      expect(runCli(['init-student', '--teacher', TINY, '--out', student, '--no-onnx']).status).toBe(0);
      const mine = join(work, 'mine');
      mkdirSync(mine);
      writeFileSync(join(mine, 'model-hidden.onnx'), 'an old export of my own');
      const mineBefore = folderDigest(mine);
      for (const force of [[], ['--force']]) {
        const r = runCli(['export', '--student', student, '--out', mine, ...force]);
        expectCleanError(r, /mine \(given as --out\) already exists and holds files distill did not write/);
        expect(r.stderr).not.toMatch(/hint: .*--force/);
      }
      expect(folderDigest(mine)).toBe(mineBefore);

      const out = join(work, 'exported');
      expect(runCli(['export', '--student', student, '--out', out]).status).toBe(0);
      const before = folderDigest(out);
      expectCleanError(
        runCli(['export', '--student', student, '--out', out]),
        /exported \(given as --out\) already holds a model made by export/,
      );
      expect(folderDigest(out)).toBe(before);
      const forced = runCli(['export', '--student', student, '--out', out, '--force']);
      expect(forced.status, forced.stderr).toBe(0);
      const moved = (JSON.parse(forced.stdout) as { moved_aside: string }).moved_aside;
      expect(folderDigest(moved)).toBe(before);
      // The Hugging Face layout (src/export/run.ts), whatever tokenizer files the student had.
      expect(readdirSync(out).sort()).toEqual([
        'README.md',
        'config.json',
        'distill.json',
        'model.safetensors',
        'onnx',
        'special_tokens_map.json',
        'tokenizer.json',
        'tokenizer_config.json',
        'vocab.txt',
      ]);
    },
  );

  it('probe-data and make-teacher refuse a folder with files the same way', () => {
    const dir = join(work, 'my-tasks');
    mkdirSync(dir);
    writeFileSync(join(dir, 'notes.txt'), 'mine');
    const before = folderDigest(dir);
    expectCleanError(
      runCli(['probe-data', dir, '--force']),
      /my-tasks \(given as DIR\) already exists and holds files distill did not write/,
    );
    expectCleanError(
      runCli(['make-teacher', '--shape', 'tiny', '--out', dir, '--force']),
      /my-tasks \(given as --out\) already exists and holds files distill did not write/,
    );
    expect(folderDigest(dir)).toBe(before);
  });
});
