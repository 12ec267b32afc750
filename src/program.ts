// The distill command line as data: the program with every command and its options, built without running
// anything (src/cli.ts parses the arguments with it; the docs test reads each command's options from it).

import { Command } from 'commander';
import { registerFillMask } from './commands/fill-mask.js';
import { registerInitStudent } from './commands/init-student.js';
import { registerEvalBatch } from './commands/eval-batch.js';
import { registerPrepare } from './commands/prepare.js';
import { registerTrain } from './commands/train.js';
import { registerBench } from './commands/bench.js';
import { registerMakeTeacher } from './commands/make-teacher.js';
import { registerPlot } from './commands/plot.js';
import { registerExport } from './commands/export.js';
import { registerProbe } from './commands/probe.js';
import { registerEval } from './commands/eval.js';

/**
 * A command's description as one paragraph per blank-line-separated block: the sources break their long
 * descriptions across lines for reading, and commander wraps each of those lines again at the terminal's width
 * (80 columns when output is not a terminal), which left every other line a few words long.
 */
function reflow(text: string): string {
  return text.replace(/([^\n])\n(?=[^\n\s])/g, '$1 ');
}

/** The `distill` program: its commands, their options and help, parsing nothing yet. */
export function distillProgram(): Command {
  const program = new Command();
  program
    // Set before the commands are added: each copies its parent's help configuration when created.
    .configureHelp({ commandDescription: (cmd) => reflow(cmd.description()) })
    .name('distill')
    .description(
      'Distil a BERT teacher (ONNX) into a DistilBERT-style student (TensorFlow.js).\n' +
        'Model folders are laid out like a Hugging Face export: config.json, tokenizer.json or vocab.txt, model.onnx.',
    )
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  registerTrain(program);
  registerPrepare(program);
  registerInitStudent(program);
  registerEvalBatch(program);
  registerFillMask(program);
  registerProbe(program);
  registerEval(program);
  registerExport(program);
  registerPlot(program);
  registerBench(program);
  registerMakeTeacher(program);
  program.addHelpText(
    'after',
    '\nStart with the tiny embedded teacher:\n  distill train --config configs/tiny.json\n' +
      '  distill fill-mask --model teacher/tiny-bert-cased --text "A [MASK] whale."\n' +
      '\nEnvironment:\n' +
      "  DISTILL_BLAS          the student's matrix products: unset = a system BLAS\n" +
      "                        (OpenBLAS) when one loads, else onnxruntime's MLAS;\n" +
      '                        "ort" = MLAS; "off" = tfjs\'s own kernels; a path = that\n' +
      '                        BLAS library (cblas_sgemm)\n' +
      '  DISTILL_BLAS_THREADS  threads for those products (default: one per core,\n' +
      "                        shared between mpirun's local ranks)\n" +
      '  DISTILL_SIMD=off      the wasm backend without the WebAssembly SIMD passes\n' +
      '  DISTILL_MPI_TIMEOUT_S under mpirun, how long a rank waits for the others\n' +
      '                        before stopping with an error (default 600)',
  );
  return program;
}
