// Nothing a user types can lose their work: every command, given outputs that touch its inputs, folders distill did
// not make, nonsense, and a disk that refuses a write, ends with exit 1 (a message naming the path or key, a hint,
// no stack trace), and every folder the user had is byte-identical after (digests before and after each case).
// Disk full, read-only, no permission, a file where a folder goes and too many open files are injected at the one
// place that writes files (src/core/out.ts, DISTILL_FAULT_WRITE), so that they are tested on every machine; the
// real thing, on small tmpfs mounts, is in test/disk-faults.test.ts.
import { beforeAll, describe, expect, it } from 'vitest';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { publicDomainParagraphs } from '../corpus/public-domain.js';
import { SafetensorsFile, writeSafetensors } from '../src/core/safetensors.js';
import { readStudentConfig } from '../student/config.js';
import { LOSS_WEIGHT_KEYS } from '../losses/record.js';
import { expectCleanError, runCli, type CliResult } from './cli-helpers.js';
import { TINY, folderDigest } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'distill-sweep-'));
/** What the user has: each folder (and file) is digested before and after every case. */
const W = {
  teacher: join(work, 'teacher'), // a user's BERT teacher (a copy of the embedded one): not made by distill
  twin: join(work, 'twin'), // the same teacher with another vocabulary of the same size (two tokens swapped)
  texts: join(work, 'texts'), // the user's raw text
  corpus: join(work, 'corpus'), // prepared by distill from texts
  student: join(work, 'student'), // init-student's
  exported: join(work, 'exported'), // export's
  run: join(work, 'run'), // a complete 2-update run
  tasks: join(work, 'tasks'), // probe-data's
  notes: join(work, 'notes'), // a folder of the user's that distill knows nothing of
  report: join(work, 'report.json'), // a file of the user's
};
const out = (name: string): string => join(work, 'out', name); // where the commands may write
const config = join(work, 'config.json');

function digestAll(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(W).map(([k, p]) => [
      k,
      existsSync(p) ? (k === 'report' ? readFileSync(p, 'utf8') : folderDigest(p)) : 'absent',
    ]),
  );
}

function writeConfig(path: string, keys: Record<string, unknown>): string {
  writeFileSync(
    path,
    JSON.stringify({
      teacher: W.teacher,
      corpus: W.corpus,
      batch_size: 4,
      grad_accum: 1,
      max_steps: 2,
      checkpoint_every: 1,
      backend: 'wasm',
      teacher_threads: 1,
      seed: 3,
      ...keys,
    }),
  );
  return path;
}

function ok(r: CliResult): CliResult {
  expect(r.status, r.stderr).toBe(0);
  return r;
}

beforeAll(() => {
  cpSync(TINY, W.teacher, { recursive: true });
  cpSync(TINY, W.twin, { recursive: true });
  const tj = JSON.parse(readFileSync(join(W.twin, 'tokenizer.json'), 'utf8')) as {
    model: { vocab: Record<string, number> };
  };
  const vocab = tj.model.vocab;
  const [a, b] = Object.keys(vocab)
    .filter((t) => /^[a-z]{4,}$/.test(t))
    .slice(0, 2) as [string, string];
  [vocab[a], vocab[b]] = [vocab[b]!, vocab[a]!];
  writeFileSync(join(W.twin, 'tokenizer.json'), JSON.stringify(tj));
  const lines = readFileSync(join(W.twin, 'vocab.txt'), 'utf8').split('\n');
  [lines[vocab[a]!], lines[vocab[b]!]] = [a, b];
  writeFileSync(join(W.twin, 'vocab.txt'), lines.join('\n'));
  mkdirSync(W.texts);
  writeFileSync(join(W.texts, 'moby.txt'), publicDomainParagraphs('moby-dick').slice(0, 300).join('\n') + '\n');
  mkdirSync(W.notes);
  writeFileSync(join(W.notes, 'mine.txt'), 'notes of my own\n');
  writeFileSync(W.report, '{"mine": true}\n');
  mkdirSync(join(work, 'out'));
  ok(runCli(['prepare', '--tokenizer', W.teacher, '--out', W.corpus, '--max-length', '48', W.texts]));
  ok(runCli(['init-student', '--teacher', W.teacher, '--out', W.student, '--no-onnx']));
  ok(runCli(['export', '--student', W.student, '--out', W.exported]));
  ok(runCli(['train', '--config', writeConfig(config, {}), '--out', W.run]));
  ok(runCli(['probe-data', W.tasks, '--per-class', '10']));
}, 300_000);

interface Case {
  /** The arguments; a function when they depend on the world made in beforeAll. */
  args: string[] | (() => string[]);
  /** What stderr must say: the path or key at fault, and the words of the message. */
  says: RegExp;
  status?: number;
  env?: Record<string, string>;
  /** The hint must not offer --force: the folder is not distill's to move. */
  noForce?: boolean;
  /** More to check after (what was written, or left). */
  then?: (r: CliResult) => void;
}

function sweep(name: string, c: Case): void {
  it(name, () => {
    const before = digestAll();
    const r = runCli(typeof c.args === 'function' ? c.args() : c.args, c.env ? { env: c.env } : {});
    if ((c.status ?? 1) === 1) expectCleanError(r, c.says);
    else {
      expect(r.status, r.stderr).toBe(c.status);
      expect(r.stderr).toMatch(c.says);
    }
    if (c.noForce) expect(r.stderr.split('\n').find((l) => l.startsWith('hint:'))).not.toMatch(/--force/);
    expect(digestAll()).toEqual(before);
    c.then?.(r);
  });
}

/** No temp (NAME.tmp-PID) or half-written output left under `dir`. */
function noTemps(dir: string): void {
  const walk = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? [e.name, ...walk(join(d, e.name))] : [e.name],
    );
  expect(existsSync(dir) ? walk(dir).filter((n) => /\.tmp-\d+$/.test(n)) : []).toEqual([]);
}

describe('train: outputs apart from inputs, folders that are not runs, nonsense', () => {
  sweep('--out is the teacher folder', {
    args: ['train', '--config', config, '--out', W.teacher],
    says: /--out .*teacher is also given as teacher \(config\)/,
    noForce: true,
  });
  sweep('--out is the teacher folder, with --force', {
    args: ['train', '--config', config, '--out', W.teacher, '--force'],
    says: /--out .*teacher is also given as teacher \(config\)/,
    noForce: true,
  });
  sweep('--out is the corpus folder', {
    args: ['train', '--config', config, '--out', W.corpus],
    says: /--out .*corpus is also given as corpus \(config\)/,
    noForce: true,
  });
  sweep('--out inside the teacher folder', {
    args: ['train', '--config', config, '--out', join(W.teacher, 'run')],
    says: /--out .*teacher\/run lies inside .*teacher, given as teacher \(config\)/,
    noForce: true,
  });
  sweep('--out contains the corpus', {
    args: ['train', '--config', config, '--out', work],
    says: /--out .* contains .*teacher, given as teacher \(config\)/,
    noForce: true,
  });
  sweep("--out is a folder of the user's, with --force", {
    args: ['train', '--config', config, '--out', W.notes, '--force'],
    says: /--out .*notes already exists and holds files distill did not write, not a run/,
    noForce: true,
  });
  sweep('--out is an exported model', {
    args: ['train', '--config', config, '--out', W.exported],
    says: /--out .*exported already exists and holds a model made by export, not a run/,
    noForce: true,
  });
  sweep('--out is a file', {
    args: ['train', '--config', config, '--out', W.report],
    says: /--out .*report\.json is a file, where the run folder goes/,
  });
  sweep('--out lies under a file', {
    args: ['train', '--config', config, '--out', join(W.report, 'run')],
    says: /report\.json\/run: .*report\.json is a file, where a folder is needed/,
  });
  sweep('--resume of a folder that is not a run', {
    args: ['train', '--out', W.notes, '--resume'],
    says: /--resume: .*notes is not a run folder: it holds files distill did not write/,
  });
  sweep('--resume where there is no run', {
    args: ['train', '--out', out('none'), '--resume'],
    says: /--resume: .*none holds no run to continue/,
    then: () => expect(existsSync(out('none'))).toBe(false),
  });
  sweep('--resume of a run that is complete: said, exit 0', {
    args: ['train', '--out', W.run, '--resume'],
    status: 0,
    says: /run is complete: 2 of 2 updates; nothing to do\. To train it longer: distill train --out .*run --resume --set max_steps=3/,
  });
  sweep('every loss weight 0', {
    args: ['train', '--config', config, '--out', out('zero'), '--set', 'alpha_ce=0', 'alpha_mlm=0', 'alpha_cos=0'],
    says: new RegExp(
      `config\\.json: every loss weight is 0 \\(${LOSS_WEIGHT_KEYS.join(', ')}\\): the run would train nothing`,
    ),
  });
  sweep("max_length other than the prepared corpus's", {
    args: ['train', '--config', config, '--out', out('len'), '--set', 'max_length=64'],
    says: /corpus\/meta\.json: the corpus was prepared with sequences of up to 48 tokens, the config's max_length is 64/,
    then: () => expect(existsSync(out('len'))).toBe(false),
  });
  sweep('valid_corpus is the training corpus', {
    args: () => [
      'train',
      '--config',
      writeConfig(join(work, 'config-valid.json'), { valid_corpus: W.corpus }),
      '--out',
      out('valid'),
    ],
    says: /config-valid\.json: "valid_corpus" is the training corpus/,
  });
  sweep('a student of another vocabulary of the same size', {
    args: () => [
      'train',
      '--config',
      writeConfig(join(work, 'config-twin.json'), {
        teacher: W.twin,
        corpus: join(work, 'twin-corpus'),
        corpus_inputs: [join(W.texts, 'moby.txt')],
        max_length: 48,
        student: W.student,
      }),
      '--out',
      out('twin'),
    ],
    says: /the vocabularies of teacher \(config\) \(.*twin\) and student \(config\) \(.*student\) differ: token \d+ is "[a-z]+" in one and "[a-z]+" in the other/,
    then: () => expect(existsSync(out('twin'))).toBe(false),
  });
  sweep('the disk fills while a checkpoint is written: the one before stays, --resume goes on', {
    args: () => ['train', '--config', config, '--out', out('full-run')],
    env: { DISTILL_FAULT_WRITE: 'ENOSPC@model.safetensors.tmp#2' }, // the second checkpoint's weights
    says: /step-00000002\.tmp-\d+\/model\.safetensors\.tmp-\d+: no space left on the disk while writing \(the write needed [\d.]+ MB\)[\s\S]*hint: free space on that disk .*, then continue the run from .*step-00000001: distill train --out .*full-run --resume/,
    then: () => {
      noTemps(out('full-run'));
      expect(readdirSync(join(out('full-run'), 'checkpoints'))).toEqual(['step-00000001']);
      expect(ok(runCli(['train', '--out', out('full-run'), '--resume'])).stderr).toMatch(
        /resuming from .*step-00000001 \(update 1\)/,
      );
      expect(
        readFileSync(join(out('full-run'), 'checkpoints', 'step-00000002', 'model.safetensors')).equals(
          readFileSync(join(W.run, 'checkpoints', 'step-00000002', 'model.safetensors')),
        ),
      ).toBe(true);
    },
  });
  sweep('a failed start leaves nothing in the way of the retry', {
    args: () => [
      'train',
      '--config',
      writeConfig(join(work, 'config-missing.json'), { teacher: join(work, 'no-teacher') }),
      '--out',
      out('retry'),
    ],
    says: /no-teacher: no such folder \(given as teacher \(config\)\)/,
    then: () => {
      expect(existsSync(out('retry'))).toBe(false);
      ok(runCli(['train', '--config', config, '--out', out('retry'), '--max-steps', '1']));
    },
  });
  sweep('--resume after the corpus was prepared again from other text', {
    args: () => {
      const corpus = out('changing-corpus');
      cpSync(W.corpus, corpus, { recursive: true });
      const cfg = writeConfig(join(work, 'config-changing.json'), { corpus, max_steps: 4 });
      ok(runCli(['train', '--config', cfg, '--out', out('changing'), '--stop-after', '1']));
      rmSync(corpus, { recursive: true });
      writeFileSync(join(work, 'other.txt'), publicDomainParagraphs('sotu').slice(0, 300).join('\n') + '\n');
      ok(runCli(['prepare', '--tokenizer', W.teacher, '--out', corpus, '--max-length', '48', join(work, 'other.txt')]));
      return ['train', '--out', out('changing'), '--resume'];
    },
    says: /--resume: the corpus changed since the checkpoint was written \(.*changing-corpus\/meta\.json differs\)/,
  });
  sweep('--dump-batches is the teacher folder', {
    args: ['train', '--config', config, '--out', out('dump'), '--dump-batches', W.teacher],
    says: /--dump-batches .*teacher is also given as teacher \(config\)/,
    then: () => expect(existsSync(out('dump'))).toBe(false),
  });
  sweep("--dump-batches holds files of the user's", {
    args: ['train', '--config', config, '--out', out('dump'), '--dump-batches', W.notes],
    says: /--dump-batches .*notes already exists and holds files distill did not write/,
  });
  sweep('a run folder as the student', {
    args: () => [
      'train',
      '--config',
      writeConfig(join(work, 'config-runstudent.json'), { student: W.run }),
      '--out',
      out('rs'),
    ],
    says: /run: is a training run, not a model \(given as student \(config\)\)/,
  });
});

describe('prepare', () => {
  const moby = join(W.texts, 'moby.txt');
  const prep = (o: string, ...inputs: string[]): string[] => [
    'prepare',
    '--tokenizer',
    W.teacher,
    '--out',
    o,
    '--max-length',
    '48',
    ...inputs,
  ];
  sweep('--out is the input folder', {
    args: prep(W.texts, W.texts),
    says: /--out .*texts is also given as INPUT/,
    noForce: true,
  });
  sweep('--out inside the input folder', {
    args: prep(join(W.texts, 'c'), W.texts),
    says: /--out .*texts\/c lies inside .*texts, given as INPUT/,
  });
  sweep("--out is the tokenizer's folder", {
    args: prep(W.teacher, moby),
    says: /--out .*teacher is also given as --tokenizer/,
  });
  sweep("--out is a folder of the user's", {
    args: prep(W.notes, moby),
    says: /--out .*notes already exists and holds files distill did not write, not a corpus/,
    noForce: true,
  });
  sweep('--out is a run', {
    args: prep(W.run, moby),
    says: /--out .*run already exists and holds a training run, not a corpus/,
    noForce: true,
  });
  sweep('--out is a file', {
    args: prep(W.report, moby),
    says: /--out .*report\.json is a file, where the corpus folder goes/,
  });
  sweep('--out inside a model folder', {
    args: prep(join(W.exported, 'c'), moby),
    says: /--out .*exported\/c lies inside .*exported, a model made by export/,
  });
  sweep('the same input twice, and a file inside a folder named too: read once, said', {
    args: prep(out('twice'), moby, moby, W.texts),
    status: 0,
    says: /note: .*moby\.txt, .*texts\/moby\.txt: named more than once \(or inside a folder named too\), read once/,
    then: () => {
      const meta = JSON.parse(readFileSync(join(out('twice'), 'meta.json'), 'utf8')) as {
        inputs: unknown[];
        shards: { file: string }[];
      };
      expect(meta.inputs).toHaveLength(1);
      expect(
        readFileSync(join(out('twice'), 'shard-00000.arrow')).equals(readFileSync(join(W.corpus, 'shard-00000.arrow'))),
      ).toBe(true);
    },
  });
  sweep('an input that is a device', {
    args: () => {
      symlinkSync('/dev/zero', join(work, 'zero.txt'));
      return prep(out('dev'), join(work, 'zero.txt'));
    },
    says: /zero\.txt: not a regular file \(a character device\)/,
    then: () => expect(existsSync(out('dev'))).toBe(false),
  });
  sweep('a line longer than 1 MB', {
    args: () => {
      writeFileSync(join(work, 'long.txt'), `short line\n${'x'.repeat(1.5 * 2 ** 20)}\nlast\n`);
      return prep(out('long'), join(work, 'long.txt'));
    },
    says: /long\.txt:2: longer than 1 MB without a line break: not one sequence of text/,
  });
  sweep('another prepare holds the folder', {
    args: () => {
      mkdirSync(out('locked'));
      writeFileSync(join(out('locked'), 'distill.json'), JSON.stringify({ made_by: 'distill', kind: 'corpus' }));
      writeFileSync(
        join(out('locked'), '.distill-lock'),
        JSON.stringify({ pid: process.pid, host: hostname(), started: 'earlier', command: 'prepare' }),
      );
      return prep(out('locked'), moby);
    },
    says: /locked is in use by distill prepare: process \d+ on .*, started earlier/,
  });
  sweep('the disk fills while a shard is written: the complete ones stay', {
    args: prep(out('full'), moby),
    env: { DISTILL_FAULT_WRITE: 'ENOSPC@shard-00000.arrow' },
    says: /shard-00000\.arrow\.tmp-\d+: no space left on the disk while writing \(the write needed \d+ kB\)[\s\S]*hint: free space on that disk \(df -h .*\).*: it continues from the last complete shard/,
    then: () => {
      noTemps(out('full'));
      expect(existsSync(join(out('full'), 'meta.json'))).toBe(false);
      // The same command, the disk fixed, finishes the corpus: the bytes of an uninterrupted one.
      ok(runCli(prep(out('full'), moby)));
      expect(
        readFileSync(join(out('full'), 'shard-00000.arrow')).equals(readFileSync(join(W.corpus, 'shard-00000.arrow'))),
      ).toBe(true);
    },
  });
  sweep('a read-only disk', {
    args: prep(out('ro'), moby),
    env: { DISTILL_FAULT_WRITE: 'EROFS@ro' },
    says: /out\/ro: the file system is read-only \(creating the folder\)[\s\S]*hint: choose an output on a writable disk/,
  });
});

describe('init-student', () => {
  const init = (o: string, ...rest: string[]): string[] => [
    'init-student',
    '--teacher',
    W.teacher,
    '--out',
    o,
    '--no-onnx',
    ...rest,
  ];
  sweep('--out is the teacher, with --force', {
    args: init(W.teacher, '--force'),
    says: /--out .*teacher is also given as --teacher/,
    noForce: true,
  });
  sweep('--out inside the teacher', {
    args: init(join(W.teacher, 'student')),
    says: /--out .*teacher\/student lies inside .*teacher, given as --teacher/,
  });
  sweep('--out is an export, with --force', {
    args: init(W.exported, '--force'),
    says: /exported \(given as --out\) holds a model made by export, not a student made by init-student/,
    noForce: true,
  });
  sweep("--out is a folder of the user's, with --force", {
    args: init(W.notes, '--force'),
    says: /notes \(given as --out\) already exists and holds files distill did not write/,
    noForce: true,
  });
  sweep('--out is a student already: --force is offered', {
    args: init(W.student),
    says: /student \(given as --out\) already holds a student made by init-student[\s\S]*hint: .*pass --force to move it aside/,
  });
  sweep('--shape with zero layers', {
    args: init(out('s0'), '--shape', '0,96,4,384'),
    says: /--shape 0,96,4,384: layers 0; a student needs at least 1/,
  });
  sweep('--shape with a width the heads do not divide', {
    args: init(out('s1'), '--shape', '2,96,5,384'),
    says: /--shape 2,96,5,384: the hidden size 96 is not a multiple of the 5 attention heads/,
  });
  sweep('a full disk: nothing half-written', {
    args: init(out('full-student')),
    env: { DISTILL_FAULT_WRITE: 'ENOSPC@model.safetensors' },
    says: /model\.safetensors\.tmp-\d+: no space left on the disk while writing \(the write needed [\d.]+ MB\)/,
    then: () => {
      expect(existsSync(out('full-student'))).toBe(false);
      noTemps(join(work, 'out'));
    },
  });
  sweep('no permission', {
    args: init(out('denied')),
    env: { DISTILL_FAULT_WRITE: 'EACCES@denied' },
    says: /denied.*: permission denied/,
    then: () => noTemps(join(work, 'out')),
  });
  sweep('too many open files', {
    args: init(out('emfile')),
    env: { DISTILL_FAULT_WRITE: 'EMFILE@config.json' },
    says: /config\.json.*: too many open files[\s\S]*hint: raise the limit of open files \(ulimit -n/,
  });
});

describe('export', () => {
  const step = (): string =>
    join(
      W.run,
      'checkpoints',
      readdirSync(join(W.run, 'checkpoints'))
        .filter((f) => f.startsWith('step-'))
        .sort()
        .at(-1)!,
    );
  sweep('--out holds the checkpoint exported, with --force', {
    args: () => ['export', '--student', step(), '--out', join(W.run, 'checkpoints'), '--force'],
    says: /--out .*run\/checkpoints contains .*step-\d+, given as --student/,
  });
  sweep('--out is the student', {
    args: ['export', '--student', W.student, '--out', W.student],
    says: /--out .*student is also given as --student/,
  });
  sweep('--out is the corpus, with --force', {
    args: ['export', '--student', W.student, '--out', W.corpus, '--force'],
    says: /corpus \(given as --out\) holds a prepared corpus, not a model made by export/,
    noForce: true,
  });
  sweep('--student is a run folder', {
    args: ['export', '--student', W.run, '--out', out('x')],
    says: /run: is a training run, not a model \(given as --student\)[\s\S]*hint: give one of its checkpoints, e.g\. the latest: --student .*step-\d+/,
  });
  sweep('--student is a corpus', {
    args: ['export', '--student', W.corpus, '--out', out('x')],
    says: /corpus: is a prepared corpus, not a model \(given as --student\)/,
  });
  sweep("a byte of the student's weights changed after init-student wrote them", {
    args: () => {
      cpSync(W.student, out('flipped-student'), { recursive: true });
      const path = join(out('flipped-student'), 'model.safetensors');
      const bytes = readFileSync(path);
      bytes[bytes.length - 5]! ^= 0x10;
      writeFileSync(path, bytes);
      return ['export', '--student', out('flipped-student'), '--out', out('from-flipped')];
    },
    says: /flipped-student\/model\.safetensors: its contents changed after distill wrote it/,
    then: () => expect(existsSync(out('from-flipped'))).toBe(false),
  });
  sweep('a read-only disk', {
    args: ['export', '--student', W.student, '--out', out('ro-export')],
    env: { DISTILL_FAULT_WRITE: 'EROFS@model.onnx' },
    says: /model\.onnx\.tmp-\d+: the file system is read-only/,
    then: () => expect(existsSync(out('ro-export'))).toBe(false),
  });
  sweep('a file where a folder is written', {
    args: ['export', '--student', W.student, '--out', out('enotdir')],
    env: { DISTILL_FAULT_WRITE: 'ENOTDIR@enotdir' },
    says: /enotdir.*: a file stands where a folder is needed/,
  });
});

describe('plot', () => {
  sweep("--out is the run's metrics", {
    args: ['plot', W.run, '--out', join(W.run, 'metrics.jsonl')],
    says: /--out .*run\/metrics\.jsonl lies inside .*run, given as RUN_DIR/,
  });
  sweep("--out is a file of the user's", {
    args: ['plot', W.run, '--out', W.report],
    says: /--out .*report\.json exists and distill did not write it/,
    noForce: true,
  });
  sweep("--out is a file of the user's, with --force", {
    args: ['plot', W.run, '--out', W.report, '--force'],
    says: /--out .*report\.json exists and distill did not write it/,
    noForce: true,
  });
  sweep('--out is a folder', {
    args: ['plot', W.run, '--out', W.notes],
    says: /--out .*notes is a folder, where a file is written/,
  });
  sweep('--out inside the teacher', {
    args: ['plot', W.run, '--out', join(W.teacher, 'losses.svg')],
    says: /--out .*teacher\/losses\.svg lies inside .*teacher, a model folder/,
  });
  sweep('a folder that is not a run', {
    args: ['plot', W.notes, '--out', out('p.svg')],
    says: /notes\/metrics\.jsonl: missing: is this a run folder/,
  });
});

describe('probe and probe-data', () => {
  const probe = (...rest: string[]): string[] => [
    'probe',
    '--teacher',
    W.teacher,
    '--student',
    W.student,
    '--task',
    join(W.tasks, 'spam-ham'),
    ...rest,
  ];
  sweep("--out is the teacher's config.json", {
    args: probe('--out', join(W.teacher, 'config.json')),
    says: /--out .*teacher\/config\.json lies inside .*teacher, given as --teacher/,
  });
  sweep("--out is a file of the user's, with --force", {
    args: probe('--out', W.report, '--force'),
    says: /--out .*report\.json exists and distill did not write it/,
    noForce: true,
  });
  sweep('--out inside a task folder', {
    args: probe('--out', join(W.tasks, 'spam-ham', 'r.json')),
    says: /--out .*spam-ham\/r\.json lies inside .*spam-ham, given as --task/,
  });
  sweep('the same task twice: read once, said', {
    args: [
      'probe',
      '--teacher',
      W.teacher,
      '--student',
      W.student,
      '--task',
      join(W.tasks, 'spam-ham'),
      `${join(W.tasks, 'spam-ham')}/.`,
      '--out',
      join(W.teacher, 'r.json'),
    ],
    says: /note: --task .*spam-ham\/\.: named more than once, read once[\s\S]*lies inside/,
  });
  sweep('a student of another vocabulary of the same size', {
    args: ['probe', '--teacher', W.twin, '--student', W.student, '--task', join(W.tasks, 'spam-ham')],
    says: /the vocabularies of --teacher \(.*twin\) and --student \(.*student\) differ: token \d+/,
  });
  sweep('--student is a run folder', {
    args: ['probe', '--teacher', W.teacher, '--student', W.run, '--task', join(W.tasks, 'spam-ham')],
    says: /run: is a training run, not a model \(given as --student\)/,
  });
  sweep('probe-data: --per-class beyond the built-in tasks', {
    args: ['probe-data', out('t'), '--per-class', '100000'],
    says: /--per-class 100000: the built-in tasks hold at most \d+ training examples per class[\s\S]*hint: give --per-class \d+ or less/,
  });
  sweep("probe-data: DIR is a folder of the user's, with --force", {
    args: ['probe-data', W.notes, '--force'],
    says: /notes \(given as DIR\) already exists and holds files distill did not write/,
    noForce: true,
  });
  sweep('probe-data: DIR holds tasks already: --force offered', {
    args: ['probe-data', W.tasks, '--per-class', '10'],
    says: /tasks \(given as DIR\) already holds probe tasks made by probe-data[\s\S]*pass --force/,
  });
  sweep('probe-data: DIR is a corpus, with --force', {
    args: ['probe-data', W.corpus, '--force'],
    says: /corpus \(given as DIR\) holds a prepared corpus, not probe tasks/,
    noForce: true,
  });
});

describe('eval, fill-mask, eval-batch, make-teacher, bench', () => {
  sweep('eval: --model is a run folder', {
    args: ['eval', '--model', W.run, '--corpus', W.corpus],
    says: /run: is a training run, not a model \(given as --model\)[\s\S]*--model .*checkpoints\/step-\d+/,
  });
  sweep('eval: --model is a corpus', {
    args: ['eval', '--model', W.corpus, '--corpus', W.corpus],
    says: /corpus: is a prepared corpus, not a model \(given as --model\)/,
  });
  sweep('eval: --model and --teacher of different vocabularies', {
    args: ['eval', '--model', W.student, '--teacher', W.twin, '--corpus', W.corpus],
    says: /the vocabularies of --model \(.*student\) and --teacher \(.*twin\) differ/,
  });
  sweep('fill-mask: --model is a run folder', {
    args: ['fill-mask', '--model', W.run, '--text', 'A [MASK] whale.'],
    says: /run: is a training run, not a model \(given as --model\)/,
  });
  sweep("fill-mask: the export's graph changed after export wrote it", {
    args: () => {
      cpSync(W.exported, out('flipped-export'), { recursive: true });
      const path = join(out('flipped-export'), 'onnx', 'model.onnx');
      const bytes = readFileSync(path);
      bytes[bytes.length - 9]! ^= 0x01;
      writeFileSync(path, bytes);
      return ['fill-mask', '--model', out('flipped-export'), '--text', 'A [MASK] whale.'];
    },
    says: /flipped-export\/onnx\/model\.onnx: its contents changed after distill wrote it/,
  });
  sweep('fill-mask: --input is a folder', {
    args: ['fill-mask', '--model', W.exported, '--input', W.notes],
    says: /notes.*(is a folder|EISDIR)/,
  });
  sweep('eval-batch: --student of another vocabulary', {
    args: ['eval-batch', '--teacher', W.twin, '--student', W.student, '--batch', W.report],
    says: /the vocabularies of --teacher \(.*twin\) and --student \(.*student\) differ/,
  });
  sweep("make-teacher: --out is a folder of the user's, with --force", {
    args: ['make-teacher', '--shape', 'tiny', '--out', W.notes, '--force'],
    says: /notes \(given as --out\) already exists and holds files distill did not write/,
    noForce: true,
  });
  sweep("make-teacher: --out is the user's teacher, with --force", {
    args: ['make-teacher', '--shape', 'tiny', '--out', W.teacher, '--force'],
    says: /teacher \(given as --out\) already exists and holds a model folder/,
    noForce: true,
  });
  sweep('make-teacher: --out is a file', {
    args: ['make-teacher', '--shape', 'tiny', '--out', W.report],
    says: /report\.json \(given as --out\) is a file, where a folder is written/,
  });
  sweep('bench: --teacher is a run folder', {
    args: ['bench', '--teacher', W.run, '--steps', '1'],
    says: /run: is a training run, not a model \(given as --teacher\)/,
  });
});

describe('weights that are not finite', () => {
  it('are never written as a model or a checkpoint, and a file holding them is named when it is read', async () => {
    const [{ studentParamSpecs }, { loadStudent, NonFiniteWeightsError, writeStudentFolder }] = await Promise.all([
      import('../student/model.js'),
      import('../student/io.js'),
    ]);
    const cfg = readStudentConfig(W.student);
    const file = SafetensorsFile.read(join(W.student, 'model.safetensors'));
    const specs = studentParamSpecs(cfg);
    const weights = new Map(specs.map((sp) => [sp.name, file.getFloat32(sp.name, sp.hfShape)]));
    const name = specs[3]!.name;
    weights.get(name)![3] = NaN;
    const dir = out('nan-student');
    expect(() => writeStudentFolder(cfg, weights, dir)).toThrow(NonFiniteWeightsError);
    expect(() => writeStudentFolder(cfg, weights, dir)).toThrow(
      `the student's weights are not finite: ${name}[3] is NaN`,
    );
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(false);
    // Written by something else (an older distill, another tool): named when loaded, not trained on.
    const other = out('nan-elsewhere');
    mkdirSync(other);
    cpSync(join(W.student, 'config.json'), join(other, 'config.json'));
    writeSafetensors(
      join(other, 'model.safetensors'),
      new Map(specs.map((sp) => [sp.name, { data: weights.get(sp.name)!, shape: sp.hfShape }])),
    );
    expect(() => loadStudent(other)).toThrow(
      new RegExp(
        `nan-elsewhere/model\\.safetensors: tensor "${name.replace(/\./g, '\\.')}" ` +
          `holds NaN at index 3: the weights are not finite`,
      ),
    );
  });
});
