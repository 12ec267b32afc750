// `npm run bench inference`: the shipped student against its teacher. For the tiny teacher, the quick start's
// student (trained as the quick start trains it), exported with --quantize int8: file sizes, `distill eval` of the
// fp32 and int8 graphs against the teacher on the run's held-out sequences, the int8 graph's top-1 agreement with
// the fp32 one at those sequences' masked positions, and onnxruntime inference speed (distill bench --inference). For a
// bert-base-cased-shaped teacher (random weights, distill make-teacher) and its 6-layer student: sizes and speed.

import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inferenceTable, type InferenceResult } from './inference-result.js';
import { loadConfig } from '../config.js';

type Cli = (args: string[], env?: Record<string, string>) => string;

export function inferenceSection(cliPath: string, tinyTeacher: string, configPath: string): string {
  const cli: Cli = (args, env = {}) => {
    const r = spawnSync(process.execPath, [cliPath, ...args], {
      encoding: 'utf8',
      env: { ...process.env, ...env },
      maxBuffer: 1 << 26,
    });
    if (r.status !== 0) throw new Error(`distill ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  const work = mkdtempSync(join(tmpdir(), 'distill-bench-inference-'));
  try {
    return [tinySection(cli, work, tinyTeacher, configPath), baseSection(cli, work)].join('\n\n');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const mb = (path: string): string => (statSync(path).size / 1e6).toFixed(2);

function benchRows(cli: Cli, models: string[], batches: string): InferenceResult[] {
  return cli([
    'bench',
    '--inference',
    '--batch-sizes',
    batches,
    '--threads',
    '0',
    ...models.flatMap((m) => ['--model', m]),
  ])
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as InferenceResult);
}

/** The folder `eval` reads as the int8 model: the export with onnx/model.onnx replaced by the int8 graph. */
function int8View(exported: string, at: string): string {
  cpSync(exported, at, { recursive: true });
  cpSync(join(exported, 'onnx', 'model_quantized.onnx'), join(at, 'onnx', 'model.onnx'));
  rmSync(join(at, 'onnx', 'model_quantized.onnx'));
  rmSync(join(at, 'distill.json')); // its digests are the export's: this copy is not that export
  return at;
}

function tinySection(cli: Cli, work: string, teacher: string, configPath: string): string {
  const run = join(work, 'tiny-run');
  cli(['train', '--config', configPath, '--out', run]);
  const exported = join(work, 'tiny-student');
  cli(['export', '--student', join(run, 'checkpoints', 'best'), '--out', exported, '--quantize', 'int8']);
  const int8 = int8View(exported, join(work, 'tiny-student-int8'));
  // The run's own held-out sequences: its corpus, seed and valid_fraction (configs/tiny.json).
  const config = loadConfig(configPath);
  const evalArgs = (model: string, against: string): string[] => [
    'eval',
    '--model',
    model,
    '--teacher',
    against,
    '--corpus',
    config.corpus,
    '--seed',
    String(config.seed),
    '--valid-fraction',
    String(config.valid_fraction),
  ];
  type Eval = { val_loss: number; val_acc: number; val_agree: number; val_kl: number; val_masked: number };
  const ev = (model: string, against: string): Eval => JSON.parse(cli(evalArgs(model, against))) as Eval;
  const fp32 = ev(exported, teacher);
  const q8 = ev(int8, teacher);
  const q8VsFp32 = ev(int8, exported);
  const rows = benchRows(cli, [teacher, exported], '1,32');
  const f4 = (n: number): string => n.toFixed(4);
  return [
    "#### the shipped student: tiny teacher, the quick start's student (distill export --quantize int8; " +
      'distill eval; distill bench --inference)',
    [
      '| configs/tiny.json student, checkpoints/best | file (MB) | val_loss | val_acc | agreement with the teacher ' +
        '| KL(teacher ‖ model) |',
      '|---|---|---|---|---|---|',
      `| fp32, onnx/model.onnx | ${mb(join(exported, 'onnx', 'model.onnx'))} | ${f4(fp32.val_loss)} | ` +
        `${f4(fp32.val_acc)} | ${f4(fp32.val_agree)} | ${f4(fp32.val_kl)} |`,
      `| int8, onnx/model_quantized.onnx | ${mb(join(exported, 'onnx', 'model_quantized.onnx'))} | ` +
        `${f4(q8.val_loss)} | ${f4(q8.val_acc)} | ${f4(q8.val_agree)} | ${f4(q8.val_kl)} |`,
    ].join('\n'),
    `The int8 graph's top-1 agrees with the fp32 graph's at ${(100 * q8VsFp32.val_agree).toFixed(1)}% of the ` +
      `${q8VsFp32.val_masked} masked positions of the run's held-out sequences (fill-mask's ranking); ` +
      `KL(fp32 ‖ int8) ${f4(q8VsFp32.val_kl)}.`,
    inferenceTable(rows),
  ].join('\n\n');
}

function baseSection(cli: Cli, work: string): string {
  const teacher = join(work, 'bert-base-random');
  cli(['make-teacher', '--shape', 'base', '--out', teacher]);
  const student = join(work, 'base-student');
  cli(['init-student', '--teacher', teacher, '--out', student, '--no-onnx']);
  const exported = join(work, 'base-student-export');
  cli(['export', '--student', student, '--out', exported, '--quantize', 'int8']);
  const rows = benchRows(cli, [teacher, exported], '1,32');
  return [
    '#### the shipped student: bert-base-cased shape (random-weight teacher from distill make-teacher; 6-layer ' +
      'student from its layers)',
    `Files: teacher model.onnx ${mb(join(teacher, 'model.onnx'))} MB; student onnx/model.onnx ` +
      `${mb(join(exported, 'onnx', 'model.onnx'))} MB, int8 onnx/model_quantized.onnx ` +
      `${mb(join(exported, 'onnx', 'model_quantized.onnx'))} MB.`,
    inferenceTable(rows),
  ].join('\n\n');
}
