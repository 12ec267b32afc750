#!/usr/bin/env node
// The distill command line: one file per command under src/commands/, one error handler here.

import { Command, CommanderError } from 'commander';
import { DistillError, StoppedError } from './core/errors.js';
import { describeOsError, osErrorOf } from './core/out.js';
import { dieBy, installSignalHandlers } from './signals.js';
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
  '\nStart with the tiny embedded teacher:\n  distill train --config configs/tiny.json\n  distill fill-mask --model ' +
    'teacher/tiny-bert-cased --text "A [MASK] whale."\n' +
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

function report(err: unknown): number {
  if (err instanceof CommanderError) {
    // commander has printed its own message (or the help / version text).
    return err.exitCode;
  }
  // An OS error that no writer turned into a message of its own (reading an input, say) still reads as one.
  const os = err instanceof DistillError ? undefined : osErrorOf(err);
  if (os) err = describeOsError(os, os.path ?? '(a file)', os.syscall ? `in ${os.syscall}` : 'in a file operation');
  if (err instanceof StoppedError) {
    // Stopped by a signal, its work in order: the process ends by that signal (a read may still block a thread).
    process.stderr.write(`${err.message}\n`);
    if (err.hint) process.stderr.write(`hint: ${err.hint}\n`);
    dieBy(err.signal);
  }
  if (err instanceof DistillError) {
    process.stderr.write(`error: ${err.message}\n`);
    if (err.hint) process.stderr.write(`hint: ${err.hint}\n`);
    return 1;
  }
  process.stderr.write(`internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.stderr.write('hint: this is a bug in distill; please report it with the command you ran\n');
  return 70;
}

installSignalHandlers();
try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exitCode = report(err);
}
// End here rather than wait for the event loop to drain: after an error a teacher worker thread or a GPU
// device may still hold it open (everything a command writes is written by then, checkpoints atomically).
process.exit(process.exitCode ?? 0);
