// distill make-teacher: a BERT teacher folder with random weights, for benchmarks without a download.

import type { Command } from 'commander';
import { choiceOption, intOption } from '../options.js';
import { writeOutputFolder } from '../core/folders.js';
import { BERT_SHAPES, writeRandomTeacher, type MadeTeacher } from '../../teacher/make-teacher.js';

interface MakeTeacherOptions {
  shape: keyof typeof BERT_SHAPES;
  out: string;
  seed: number;
  force: boolean;
}

export function runMakeTeacher(opts: MakeTeacherOptions): Promise<MadeTeacher & { moved_aside?: string }> {
  return writeOutputFolder({ path: opts.out, option: '--out' }, 'teacher', opts.force, [], (dir) => ({
    ...writeRandomTeacher(dir, BERT_SHAPES[opts.shape], opts.seed),
    dir: opts.out,
  }));
}

export function registerMakeTeacher(program: Command): void {
  program
    .command('make-teacher')
    .summary('write a random-weight BERT teacher (e.g. bert-base-cased-shaped) for trying things')
    .description(
      "Write a BERT teacher folder with random weights (BERT's initialisation): model.onnx (opset 17, logits only, " +
        'as a\n' +
        ("transformers export), model.safetensors (transformers' names, for init-student), config.json and a " +
          'synthetic WordPiece\n') +
        ('vocabulary. Shapes: base = bert-base-cased (12 × 768, 12 heads, FFN 3072, vocabulary 28996, 512 positions; ' +
          '~430 MB each\n') +
        ("for the ONNX and the safetensors file), tiny = the embedded tiny teacher's shape. Its predictions mean " +
          'nothing: it is for\n') +
        '`distill bench --teacher DIR` and for walking the whole pipeline (prepare, train, eval, probe, export) at\n' +
        'a real shape without a download. Prints {dir, parameters, onnxBytes} as JSON.',
    )
    .option('--shape <shape>', 'base or tiny', choiceOption('--shape', ['base', 'tiny'] as const), 'base')
    .requiredOption('--out <dir>', 'folder to write (new or empty)')
    .option(
      '--force',
      'replace a teacher that make-teacher wrote at --out: ' +
        'it is moved to OUT.old-<time> (never deleted); any other folder is refused',
      false,
    )
    .option('--seed <n>', 'seed of the random weights', intOption('--seed', 0), 0)
    .action(async (o: MakeTeacherOptions) => {
      process.stdout.write(JSON.stringify(await runMakeTeacher(o)) + '\n');
    });
}
