// distill bench: the distillation step timed on fixed shapes (see src/bench/step.ts).

import type { Command } from 'commander';
import { InputError } from '../core/errors.js';
import { choiceOption, intOption } from '../options.js';
import {
  BACKEND_NAMES,
  GPU_PRODUCTS,
  PRECISIONS,
  type GpuProducts,
  type Precision,
} from '../../student/backend-names.js';

interface BenchCommandOptions {
  teacher?: string;
  inference?: boolean;
  model?: string[];
  batchSizes: number[];
  runs?: number;
  batch: number;
  seq: number;
  steps: number;
  studentLayers?: number;
  backend?: (typeof BACKEND_NAMES)[number];
  threads: number;
  teacherEp?: 'cpu' | 'cuda' | 'webgpu';
  profile?: boolean;
  dropout: boolean;
  topk: number;
  gpuAdapter?: string;
  precision: Precision;
  products: GpuProducts;
}

export function registerBench(program: Command): void {
  program
    .command('bench')
    .summary('time the distillation step on random tokens')
    .description(
      'Time the distillation step on random tokens: prints one JSON line with distill_tokens_per_s (whole\n' +
        'steps, teacher one batch ahead), teacher_fwd_tokens_per_s, student_step_tokens_per_s and the backend; the\n' +
        'median of the timed steps after one warm-up, the same step as src/bench/torch_distill_step.py bench\n' +
        '(PyTorch).',
    )
    .option('--teacher <dir>', 'teacher folder (its shape sets the student: half the layers)')
    .option(
      '--inference',
      'instead: onnxruntime CPU inference of each --model (its onnx/model_quantized.onnx too): tokens/s, latency ' +
        'p50/p95, parameters and file size at each --batch-sizes and --seq; one JSON line each, a table on stderr',
    )
    .option('--model <dirs...>', 'with --inference: model folders (a teacher, an export)')
    .option('--batch-sizes <list>', 'with --inference: batch sizes, comma-separated', batchList, [1, 32])
    .option('--runs <n>', 'with --inference: timed runs each (default 20 at batch 1, else 5)', intOption('--runs', 1))
    .option('--batch <n>', 'sequences per step', intOption('--batch', 1), 32)
    .option('--seq <n>', 'tokens per sequence', intOption('--seq', 2), 128)
    .option('--steps <n>', 'timed steps', intOption('--steps', 1), 5)
    .option('--student-layers <n>', "student depth (default half the teacher's)", intOption('--student-layers', 1))
    .option(
      '--backend <name>',
      `student backend: ${BACKEND_NAMES.join(', ')}`,
      choiceOption('--backend', BACKEND_NAMES),
    )
    .option('--threads <n>', 'onnxruntime CPU threads for the teacher (0 = all cores)', intOption('--threads', 0), 1)
    .option(
      '--teacher-ep <ep>',
      'teacher execution provider: cpu, webgpu or cuda (default: ' +
        'cuda when installed, else webgpu with --backend webgpu, else cpu)',
      choiceOption('--teacher-ep', ['cpu', 'cuda', 'webgpu'] as const),
    )
    .option(
      '--topk <k>',
      'top-k soft targets, as soft_targets_topk (0 = the whole vocabulary)',
      intOption('--topk', 0),
      0,
    )
    .option(
      '--gpu-adapter <name>',
      'with --backend webgpu: the adapter whose name contains this (the error lists the adapters found)',
    )
    .option(
      '--precision <p>',
      "the student's products: fp32, or fp16-mixed (with --backend webgpu: f16 operands, fp32 sums; loss scale 1024)",
      choiceOption('--precision', PRECISIONS),
      'fp32',
    )
    .option(
      '--products <p>',
      "with --backend webgpu and fp32: the matrix products by tfjs's kernel (tfjs) or by distill's tiled program " +
        '(tiled), as webgpu_products',
      choiceOption('--products', GPU_PRODUCTS),
      'tfjs',
    )
    .option(
      '--dropout',
      "the student's dropout on, as distill train runs it (its config's rate; off by default, as the PyTorch peer)",
      false,
    )
    .option('--profile', 'also time one student step kernel by kernel: adds "profile" to the JSON line')
    .action(async (o: BenchCommandOptions) => {
      if (o.inference) return benchInferenceCommand(o);
      if (!o.teacher)
        throw new InputError('--teacher is required', 'give a teacher folder, or --inference --model DIR');
      // tfjs and onnxruntime: loaded to run, not for --help
      const { benchDistillStep } = await import('../bench/step.js');
      const r = await benchDistillStep({
        teacher: o.teacher,
        batch: o.batch,
        seq: o.seq,
        steps: o.steps,
        studentLayers: o.studentLayers,
        backend: o.backend,
        threads: o.threads,
        teacherEp: o.teacherEp,
        profile: o.profile,
        dropout: o.dropout,
        topk: o.topk,
        gpuAdapter: o.gpuAdapter,
        precision: o.precision,
        gpuProducts: o.products,
      });
      process.stdout.write(JSON.stringify(r) + '\n');
    });
}

async function benchInferenceCommand(o: BenchCommandOptions): Promise<void> {
  if (!o.model?.length) throw new InputError('--inference needs --model', 'e.g. --model TEACHER --model EXPORT');
  const [{ benchInference }, { inferenceTable }] = await Promise.all([
    import('../bench/inference.js'),
    import('../bench/inference-result.js'),
  ]);
  const rows = await benchInference({
    models: o.model,
    batches: o.batchSizes,
    sequence: o.seq,
    threads: o.threads,
    ...(o.runs !== undefined ? { runs: o.runs } : {}),
    onResult: (r) => process.stdout.write(JSON.stringify(r) + '\n'),
  });
  process.stderr.write(inferenceTable(rows) + '\n');
}

/** "1,32": whole numbers from 1. */
function batchList(v: string): number[] {
  const parts = v.split(',').map((x) => Number(x.trim()));
  if (parts.length === 0 || parts.some((n) => !Number.isInteger(n) || n < 1))
    throw new InputError(`--batch-sizes ${JSON.stringify(v)}: expected whole numbers from 1, comma-separated`);
  return parts;
}
