// distill export: the student as ONNX, in a model folder that fill-mask and --teacher accept.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { FileFormatError } from '../core/errors.js';
import { assertModelDir } from '../core/model-dir.js';
import { SafetensorsFile } from '../core/safetensors.js';
import { writeFileAtomic } from '../core/out.js';
import { writeOutputFolder } from '../core/folders.js';
import { choiceOption } from '../options.js';
import { readStudentConfig, studentConfigJson } from '../../student/config.js';

interface ExportOptions {
  student: string;
  format: 'onnx';
  out: string;
  force: boolean;
}

export async function runExport(opts: ExportOptions): Promise<{ out: string; bytes: number; moved_aside?: string }> {
  assertModelDir(opts.student, '--student');
  const config = readStudentConfig(opts.student);
  const path = join(opts.student, 'model.safetensors');
  if (!existsSync(path))
    throw new FileFormatError(
      path,
      'missing',
      'a student folder holds model.safetensors (init-student or a checkpoint)',
    );
  // A folder with files is never overwritten in place: a stale model-hidden.onnx left there would be preferred
  // over the new model.onnx by --teacher. Checked before any work.
  return writeOutputFolder(
    { path: opts.out, option: '--out' },
    'export',
    opts.force,
    [{ path: opts.student, option: '--student' }],
    async (dir) => {
      // The student's modules bring tfjs: loaded once the input has been checked, not for --help or a bad path.
      const [{ studentParamSpecs }, { copyTokenizerFiles, finiteWeight }, { studentToOnnx }] = await Promise.all([
        import('../../student/model.js'),
        import('../../student/io.js'),
        import('../../student/export-onnx.js'),
      ]);
      const file = SafetensorsFile.read(path);
      // The model only: a training-time projection (distill_projection.safetensors) stays behind.
      const weights = new Map(
        studentParamSpecs(config)
          .filter((s) => !s.aux)
          .map((s) => [s.name, finiteWeight(file, s.name, s.hfShape)]),
      );
      const bytes = studentToOnnx(config, weights);
      writeFileAtomic(join(dir, 'model.onnx'), bytes);
      writeFileAtomic(join(dir, 'config.json'), JSON.stringify(studentConfigJson(config, true), null, 2) + '\n');
      copyTokenizerFiles(opts.student, dir);
      return { out: opts.out, bytes: bytes.byteLength };
    },
  );
}

export function registerExport(program: Command): void {
  program
    .command('export')
    .summary('export a student to ONNX')
    .description(
      'Export a student (a DistilBERT folder: init-student output or a checkpoint) to ONNX: model.onnx with inputs\n' +
        ('input_ids, attention_mask and outputs logits, hidden_states.0…L, plus config.json and the tokenizer, so ' +
          'the\n') +
        'folder works as --model for fill-mask and as --teacher.',
    )
    .requiredOption('--student <dir>', 'student folder (config.json + model.safetensors)')
    .option('--format <format>', 'export format', choiceOption('--format', ['onnx'] as const), 'onnx')
    .requiredOption('--out <dir>', 'output folder (new or empty)')
    .option(
      '--force',
      'replace an earlier export at --out: it is moved to OUT.old-<time> (never deleted); any other folder is refused',
      false,
    )
    .action(async (opts: ExportOptions) => {
      process.stdout.write(JSON.stringify(await runExport(opts)) + '\n');
    });
}
