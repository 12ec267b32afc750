// npm run bench: the benchmark tables of README.md and docs/, measured on this machine in this run.
// Each benchmark runs in a child process so that timings and peak memory are its own.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writePublicDomainText } from '../../corpus/public-domain.js';
import { writeFileAtomic } from '../core/out.js';
import { cpuProductEngine } from '../../student/backend.js';
import { benchAblation, INTERMEDIATE_VARIANTS, TOPK_VARIANTS } from './ablation.js';
import { inferenceSection } from './inference-section.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '..', '..', '..');
const TINY = join(REPO, 'teacher', 'tiny-bert-cased');

interface PrepareRun {
  bytes: number;
  seconds: number;
  mb_per_s: number;
  tokens: number;
  tokens_per_s: number;
  sequences: number;
  peak_rss_mb: number;
  workers: number;
}

function runChild(script: string, args: string[]): PrepareRun {
  const r = spawnSync(process.execPath, [join(HERE, script), ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${script} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as PrepareRun;
}

function benchPrepare(): string {
  const work = mkdtempSync(join(tmpdir(), 'distill-bench-prepare-'));
  try {
    const one = join(work, 'x1', 'sotu-moby.txt');
    const ten = join(work, 'x10', 'sotu-moby-x10.txt');
    writePublicDomainText(one, ['sotu', 'moby-dick'], 1);
    writePublicDomainText(ten, ['sotu', 'moby-dick'], 10);
    // Peak memory is a maximum, and a short run's depends on when V8 collects: each size runs twice, in fresh
    // processes, and the table gives the faster time and the higher peak. Once on one thread (--workers 0), once as
    // the default runs (--workers auto: tokenizing threads beside the reading one).
    const twice = (workers: string, out: string, input: string): PrepareRun => {
      const runs = [0, 1].map((i) => runChild('prepare-child.js', [workers, TINY, `${out}-${workers}-${i}`, input]));
      const fast = runs[0]!.seconds <= runs[1]!.seconds ? runs[0]! : runs[1]!;
      return { ...fast, peak_rss_mb: Math.max(runs[0]!.peak_rss_mb, runs[1]!.peak_rss_mb) };
    };
    const rows = [
      '| corpus | tokenizing threads | MB | tokens | MB/s | tokens/s | peak RSS (MB) |',
      '|---|---|---|---|---|---|---|',
    ];
    const growth: string[] = [];
    for (const workers of ['0', 'auto']) {
      const a = twice(workers, join(work, 'out1'), one);
      const b = twice(workers, join(work, 'out10'), ten);
      for (const [name, r] of [
        ['SOTU + Moby Dick ×1', a],
        ['SOTU + Moby Dick ×10', b],
      ] as const) {
        const threads = workers === '0' ? '0 (`--workers 0`)' : `${r.workers} (\`--workers auto\`, the default)`;
        rows.push(
          `| ${name} | ${threads} | ${(r.bytes / 1e6).toFixed(1)} | ${r.tokens.toLocaleString('en-US')} | ` +
            (`${r.mb_per_s.toFixed(2)} | ${Math.round(r.tokens_per_s).toLocaleString('en-US')} ` +
              `| ${r.peak_rss_mb.toFixed(0)} |`),
        );
      }
      const g = (b.peak_rss_mb / a.peak_rss_mb - 1) * 100;
      growth.push(`${g >= 0 ? '+' : ''}${g.toFixed(1)}% with --workers ${workers}`);
    }
    rows.push('', `Peak RSS at 10× the corpus: ${growth.join(', ')} (target: within 20%).`);
    return rows.join('\n');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** A block's stamp: the command, the commit, the CPU, the BLAS kernel OpenBLAS picked, Node, the date. */
function machineLine(section: string): string {
  const git = (args: string[]): string => spawnSync('git', args, { cwd: REPO, encoding: 'utf8' }).stdout?.trim() ?? '';
  const commit = git(['rev-parse', '--short', 'HEAD']) || 'unknown';
  // The pages the bench writes its blocks into are not the code it measures.
  const changed = git(['status', '--porcelain', '--untracked-files=no', '--', '.', ':!README.md', ':!docs']);
  const dirty = changed ? ' (with uncommitted changes)' : '';
  const library = cpuProductEngine() ?? 'none';
  const cpu = `${cpus()[0]?.model ?? 'an unknown CPU'} (${availableParallelism()} cores)`;
  const date = new Date().toISOString().slice(0, 10);
  return (
    `Measured by \`npm run bench ${section}\` at commit ${commit}${dirty} on ${cpu}, ` +
    `Node ${process.version}; BLAS: ${library}; ${date}.`
  );
}

const sections = process.argv.slice(2);
// `npm run bench` runs every section but the ablations and the top-k comparison (about an hour each):
// `npm run bench ablation`, `npm run bench ablation-intermediate`, `npm run bench topk` run them.
const LONG = ['ablation', 'ablation-intermediate', 'topk'];
const want = (name: string): boolean => (sections.length === 0 && !LONG.includes(name)) || sections.includes(name);
if (want('prepare')) {
  section('prepare', 'prepare (distill prepare, tiny-bert-cased tokenizer, max length 128)', benchPrepare);
}

interface StepRun {
  distill_tokens_per_s: number;
  teacher_fwd_tokens_per_s: number;
  student_step_tokens_per_s: number;
  backend: string;
  matmul: string;
}
interface PeerRun {
  distill_tokens_per_s: number;
  teacher_fwd_tokens_per_s: number;
  torch: string;
  threads: number;
}

// The PyTorch peer: the same step in plain PyTorch (a copy of the project's reference script, kept in the repo).
const PEER = join(REPO, 'src', 'bench', 'torch_distill_step.py');

/** One `distill bench` run in a child process (env: e.g. DISTILL_BLAS=off for a fresh install's path). */
function distillBench(teacher: string, batch: number, steps: number, env: Record<string, string> = {}): StepRun {
  const r = spawnSync(
    process.execPath,
    [
      join(HERE, '..', 'cli.js'),
      'bench',
      '--teacher',
      teacher,
      '--batch',
      String(batch),
      '--seq',
      '128',
      '--steps',
      String(steps),
    ],
    { encoding: 'utf8', env: { ...process.env, ...env } },
  );
  if (r.status !== 0) throw new Error(`distill bench failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as StepRun;
}

/**
 * distill bench three ways: products on the engine this machine picks (OpenBLAS where installed), as a fresh
 * `npm install` runs it (no system BLAS: onnxruntime's MLAS, DISTILL_BLAS=ort), and on tfjs-wasm's own kernels
 * (DISTILL_BLAS=off, the last resort); then the PyTorch peer on the same shape. One table.
 */
function benchStep(teacher: string, shape: 'tiny' | 'base', batch: number, steps: number): string {
  const o = distillBench(teacher, batch, steps);
  const onOrt = o.matmul.startsWith('onnxruntime');
  const fresh = onOrt ? o : distillBench(teacher, batch, steps, { DISTILL_BLAS: 'ort' });
  const own = distillBench(teacher, batch, steps, { DISTILL_BLAS: 'off' });
  const peer = spawnSync(
    '/usr/bin/python3',
    [PEER, 'bench', '--shape', shape, '--batch', String(batch), '--seq', '128', '--steps', String(steps)],
    { encoding: 'utf8' },
  );
  const p = peer.status === 0 ? (JSON.parse(peer.stdout.trim().split('\n').at(-1)!) as PeerRun) : undefined;
  const f = (n: number): string => Math.round(n).toLocaleString('en-US');
  const ratio = (a: number, b: number | undefined): string => (b ? (a / b).toFixed(2) : '–');
  const installed = onOrt ? 'no system BLAS installed' : `products on ${o.matmul.split(' ').slice(0, 2).join(' ')}`;
  const cells = (k: keyof StepRun & `${string}_per_s`): string =>
    `${onOrt ? 'same as fresh install' : f(o[k])} | ${f(fresh[k])} | ${f(own[k])}`;
  const rows = [
    `| ${shape} shape, batch ${batch} × 128 | distill (tfjs ${o.backend}, ${installed}) | distill, fresh npm install ` +
      (`(products on onnxruntime's MLAS) | distill, tfjs-wasm's own products (DISTILL_BLAS=off) | PyTorch CPU ` +
        (`peer${p ? ` (torch ${p.torch}, ${p.threads} threads)` : ''} ` +
          `| fresh install / OpenBLAS | fresh install / peer |`)),
    '|---|---|---|---|---|---|---|',
    `| whole distillation step, tokens/s | ${cells('distill_tokens_per_s')} | ` +
      (`${p ? f(p.distill_tokens_per_s) : 'not run'} | ` +
        (`${onOrt ? '–' : ratio(fresh.distill_tokens_per_s, o.distill_tokens_per_s)} | ` +
          `${ratio(fresh.distill_tokens_per_s, p?.distill_tokens_per_s)} |`)),
    `| teacher forward, tokens/s | ${cells('teacher_fwd_tokens_per_s')} | ` +
      `${p ? f(p.teacher_fwd_tokens_per_s) : 'not run'} | – | – |`,
    `| student forward + backward + AdamW alone, tokens/s | ${cells('student_step_tokens_per_s')} | – | ` +
      `${onOrt ? '–' : ratio(fresh.student_step_tokens_per_s, o.student_step_tokens_per_s)} | – |`,
  ];
  rows.push(
    '',
    `Student matrix products: ${o.matmul}; fresh install: ${fresh.matmul}; ` +
      `DISTILL_BLAS=off: tfjs-wasm's own (XNNPACK, one thread).`,
  );
  if (!p)
    rows.push(
      '',
      `PyTorch peer not run (${PEER}: needs apt-get install -y python3-torch libopenblas0-pthread): ` +
        `${peer.stderr?.split('\n').slice(-2).join(' ') ?? ''}`,
    );
  return rows.join('\n');
}

/** The bert-base-cased shape: a random-weight teacher written by make-teacher (so no download), then the step. */
function benchBaseStep(): string {
  const work = mkdtempSync(join(tmpdir(), 'distill-bench-base-'));
  try {
    const teacher = join(work, 'bert-base-random');
    const made = spawnSync(
      process.execPath,
      [join(HERE, '..', 'cli.js'), 'make-teacher', '--shape', 'base', '--out', teacher],
      { encoding: 'utf8' },
    );
    if (made.status !== 0) throw new Error(`make-teacher failed: ${made.stderr}`);
    return benchStep(teacher, 'base', 8, 2);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

interface TrainRun {
  tokens_per_s: number;
  comm_s_per_update: number;
  steps: number;
  world_size: number;
}

function benchRanks(): string {
  const work = mkdtempSync(join(tmpdir(), 'distill-bench-ranks-'));
  try {
    const text = join(work, 'corpus.txt');
    writePublicDomainText(text, ['moby-dick']);
    const config = join(work, 'config.json');
    // Global batch 16 sequences of up to 128 tokens per update in both cases: 1 × 16, or 2 ranks × 8.
    const base = {
      teacher: TINY,
      corpus: join(work, 'corpus'),
      corpus_inputs: [text],
      max_length: 128,
      grad_accum: 1,
      max_steps: 8,
      checkpoint_every: 0,
      backend: 'wasm',
      teacher_threads: 1,
      seed: 5,
    };
    const run = (ranks: number): TrainRun => {
      spawnSync('rm', ['-rf', join(work, `run${ranks}`)]);
      const cfg = { ...base, batch_size: 16 / ranks };
      writeFileAtomic(config, JSON.stringify(cfg));
      const args = [join(HERE, '..', 'cli.js'), 'train', '--config', config, '--out', join(work, `run${ranks}`)];
      const r =
        ranks === 1
          ? spawnSync(process.execPath, args, { encoding: 'utf8' })
          : spawnSync(
              'mpirun',
              ['--allow-run-as-root', '--oversubscribe', '-np', String(ranks), process.execPath, ...args],
              { encoding: 'utf8' },
            );
      if (r.status !== 0) throw new Error(`train with ${ranks} rank(s) failed: ${r.stderr}`);
      return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as TrainRun;
    };
    const one = run(1);
    const hasMpi = spawnSync('mpirun', ['--version']).status === 0;
    const two = hasMpi ? run(2) : undefined;
    const f = (n: number): string => Math.round(n).toLocaleString('en-US');
    return [
      '| ranks (tiny teacher, global batch 16 × ≤128, 8 updates) | training tokens/s | all-reduce time per update |',
      '|---|---|---|',
      `| 1 | ${f(one.tokens_per_s)} | – |`,
      two
        ? `| 2 (mpirun, one per core) | ${f(two.tokens_per_s)} | ${(two.comm_s_per_update * 1000).toFixed(0)} ms ` +
          `(waiting for the slower rank included) |`
        : '| 2 | not run: mpirun not installed | |',
    ].join('\n');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (want('step')) {
  section('step', 'distillation step (distill bench vs src/bench/torch_distill_step.py bench, same run)', () =>
    benchStep(TINY, 'tiny', 32, 5),
  );
}
if (want('step-base')) {
  const title = 'distillation step, bert-base-cased shape (random-weight teacher from make-teacher; 6-layer student)';
  section('step-base', title, benchBaseStep);
}
if (want('ranks')) {
  section('ranks', 'data-parallel training on this machine (distill train, 1 process vs mpirun -np 2)', benchRanks);
}

interface QuickStartRun {
  seconds: number;
  summary: { steps: number; final_loss: number; tokens_per_s: number; checkpoint: string };
  first: Record<string, number>;
  last: Record<string, number>;
}

/**
 * The README's quick start (`distill train --config configs/tiny.json`), as it runs with `env`, from a prepared corpus.
 */
function quickStart(out: string, env: Record<string, string>, extra: string[] = []): QuickStartRun {
  const started = performance.now();
  const r = spawnSync(
    process.execPath,
    [join(HERE, '..', 'cli.js'), 'train', '--config', join(REPO, 'configs', 'tiny.json'), '--out', out, ...extra],
    { encoding: 'utf8', env: { ...process.env, ...env } },
  );
  if (r.status !== 0) throw new Error(`the quick start failed: ${r.stderr}`);
  const seconds = (performance.now() - started) / 1000;
  const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>)
    .filter((l) => 'loss' in l); // updates, not val_* lines
  return {
    seconds,
    summary: JSON.parse(r.stdout.trim().split('\n').at(-1)!) as QuickStartRun['summary'],
    first: lines[0]!,
    last: lines.at(-1)!,
  };
}

/** The quick start with the installed BLAS and as a fresh install runs it, then the README's probe walkthrough. */
function benchQuickStart(): string {
  const work = mkdtempSync(join(tmpdir(), 'distill-bench-quickstart-'));
  const cli = (args: string[]): string => {
    const r = spawnSync(process.execPath, [join(HERE, '..', 'cli.js'), ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`distill ${args[0]} failed: ${r.stderr}`);
    return r.stdout;
  };
  try {
    // The corpus is prepared once (by a one-update run) so that both timings are of training alone.
    quickStart(join(work, 'warm'), {}, ['--max-steps', '1']);
    const withBlas = quickStart(join(work, 'tiny'), {});
    const fresh = quickStart(join(work, 'tiny-fresh'), { DISTILL_BLAS: 'ort' });
    const own = quickStart(join(work, 'tiny-own'), { DISTILL_BLAS: 'off' });
    const f2 = (n: number): string => n.toFixed(2);
    const row = (name: string, q: QuickStartRun): string =>
      `| ${name} | ${q.summary.steps} | ${q.seconds.toFixed(0)} | ` +
      (`${Math.round(q.summary.tokens_per_s).toLocaleString('en-US')} | ${f2(q.first['loss']!)} → ` +
        `${f2(q.last['loss']!)} | ` +
        (`${f2(q.first['loss_ce']!)} → ${f2(q.last['loss_ce']!)} | ${q.first['loss_cos']!.toFixed(3)} → ` +
          `${q.last['loss_cos']!.toFixed(3)} |`));
    const rows = [
      '| npx distill train --config configs/tiny.json | updates | ' +
        'wall s | training tokens/s | loss | loss_ce | loss_cos |',
      '|---|---|---|---|---|---|---|',
      row(`as installed here (products: ${cpuProductEngine() ?? "tfjs's own"})`, withBlas),
      row("fresh `npm install` (no system BLAS: products on onnxruntime's MLAS, DISTILL_BLAS=ort)", fresh),
      row("tfjs-wasm's own products (DISTILL_BLAS=off)", own),
    ];
    // The probe walkthrough on the student of the run with OpenBLAS.
    const tasks = join(work, 'probe-tasks');
    cli(['probe-data', tasks]);
    const table = cli([
      'probe',
      '--teacher',
      TINY,
      '--student',
      withBlas.summary.checkpoint,
      '--task',
      join(tasks, 'spam-ham'),
      join(tasks, 'next-passage'),
      '--out',
      join(work, 'probe.json'),
    ]);
    rows.push(
      '',
      '`distill probe-data DIR` (defaults), then `distill probe --teacher teacher/tiny-bert-cased --student <the ' +
        "run's last checkpoint> --task DIR/spam-ham DIR/next-passage`:",
      '',
      table.trim(),
    );
    return rows.join('\n');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (want('quickstart')) {
  section('quickstart', 'the quick start and the probe walkthrough (distill train; distill probe)', benchQuickStart);
}
if (want('inference')) {
  section(
    'inference',
    'the shipped student: inference (distill export --quantize int8; distill bench --inference)',
    () => inferenceSection(join(HERE, '..', 'cli.js'), TINY, join(REPO, 'configs', 'tiny.json')),
  );
}
const progress = (line: string): boolean => process.stderr.write(line + '\n');
if (want('ablation')) {
  section('ablation', "DistilBERT's ablation (its Table 4) on the tiny teacher", () => benchAblation(TINY, progress));
}
if (want('ablation-intermediate')) {
  section('ablation-intermediate', 'intermediate-layer objectives and a half-width student on the tiny teacher', () =>
    benchAblation(TINY, progress, INTERMEDIATE_VARIANTS),
  );
}
if (want('topk')) {
  section('topk', 'top-k soft targets against the full KL on the tiny teacher', () =>
    benchAblation(TINY, progress, TOPK_VARIANTS),
  );
}

/**
 * Run one section: print its table, and write it with its stamp into every page that holds its block,
 * `<!-- NAME:begin -->` … `<!-- NAME:end -->` in README.md or docs/*.md (test/docs.test.ts: figures with a commit
 * and a date appear only inside these blocks).
 */
function section(name: string, title: string, produce: () => string): void {
  process.stdout.write(`### ${title}\n\n`);
  const text = `${machineLine(name)}\n\n${produce().trim()}`;
  process.stdout.write(text + '\n\n');
  const pages = [join(REPO, 'README.md'), ...readdirSync(join(REPO, 'docs')).map((f) => join(REPO, 'docs', f))];
  const written = pages.filter((page) => page.endsWith('.md') && writeBlock(page, name, text));
  if (written.length === 0) process.stderr.write(`no page has a ${name} block: the section is printed only\n`);
  else process.stderr.write(`${name}: written into ${written.map((p) => relative(REPO, p)).join(', ')}\n`);
}

/** Replace the text of `page`'s block NAME with `text`; false when the page has no such block. */
function writeBlock(page: string, name: string, text: string): boolean {
  const markdown = readFileSync(page, 'utf8');
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const a = markdown.indexOf(begin);
  const b = markdown.indexOf(end);
  if (a < 0 || b < a) return false;
  writeFileAtomic(page, markdown.slice(0, a + begin.length) + '\n' + text + '\n' + markdown.slice(b));
  return true;
}
