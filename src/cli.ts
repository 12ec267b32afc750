#!/usr/bin/env node
// The distill command line: one file per command under src/commands/, one error handler here.

import { CommanderError } from 'commander';
import { DistillError, StoppedError } from './core/errors.js';
import { describeOsError, osErrorOf } from './core/out.js';
import { dieBy, installSignalHandlers } from './signals.js';
import { distillProgram } from './program.js';

const program = distillProgram();

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
