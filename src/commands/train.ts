// distill train: a distillation run from a JSON config, with checkpoints and exact resume.

import { existsSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { loadConfig, parseOverride, type TrainConfig } from '../config.js';
import { InputError } from '../core/errors.js';
import { OutputError } from '../core/out.js';
import { intOption } from '../options.js';
import { Eta, formatCount, ProgressReporter } from '../progress.js';
import type { TrainPhase, TrainSummary } from '../train/loop.js';
import { onStopRequest } from '../signals.js';
import { assertRunToResume } from '../train/run-dir.js';
import { worldFromEnvironment } from '../parallel/mpi.js';

interface TrainCommandOptions {
  config?: string;
  out?: string;
  maxSteps?: number;
  stopAfter?: number;
  checkpointEvery?: number;
  resume: boolean;
  force: boolean;
  set: string[];
  backend?: string;
  teacherEp?: string;
  dumpBatches?: string;
}

export async function runTrain(opts: TrainCommandOptions): Promise<TrainSummary & { signal?: NodeJS.Signals }> {
  // --backend and --teacher-ep are shorthands for --set backend=... / teacher_ep=... (validated with the config).
  const shorthands = [
    ...(opts.backend ? [`backend="${opts.backend}"`] : []),
    ...(opts.teacherEp ? [`teacher_ep="${opts.teacherEp}"`] : []),
  ];
  const overrides = [...opts.set, ...shorthands];
  if (opts.config === undefined) {
    if (!opts.resume)
      throw new InputError(
        '--config <file> is required',
        'name the run configuration, e.g. --config configs/tiny.json (or continue a run: --resume --out RUN)',
      );
    if (opts.out === undefined)
      throw new InputError(
        '--resume without --config needs --out: the run folder to continue',
        'e.g. distill train --resume --out runs/tiny',
      );
  }
  if (opts.config !== undefined && !(existsSync(opts.config) && statSync(opts.config).isFile())) {
    throw new InputError(
      `--config ${opts.config}: ${existsSync(opts.config) ? 'a folder, not a file' : 'no such file'} ` +
        `(looked in ${resolve(opts.config)})`,
      "give the path of a JSON run configuration, e.g. --config configs/tiny.json (the repository's configs/ folder " +
        'holds tiny.json, tiny-narrow.json and distilbert-base-cased.json)',
    );
  }
  const runDir = resolve(opts.out ?? join('runs', basename(opts.config!, extname(opts.config!))));
  if (opts.resume) assertRunToResume(runDir);
  // On --resume without --config, the run's own config (recorded in its latest checkpoint) stands in for the file.
  const config =
    opts.config !== undefined
      ? loadConfig(opts.config, overrides)
      : (await import('../train/resume.js')).recordedConfig(runDir, overrides);
  // The keys asked for on the command line: on --resume, these (and only these) change the run.
  const overridden = overrides.map((o) => parseOverride(o)[0] as keyof TrainConfig);
  const { train } = await import('../train/loop.js'); // tfjs and onnxruntime: loaded when a run starts, not for --help
  const comm = await worldFromEnvironment();
  const isRoot = comm.rank === 0;
  const bar = new ProgressReporter('train', process.stderr, 5_000);
  // SIGINT (Ctrl-C) and SIGTERM (what a scheduler sends before it kills a job): finish what is under way in order and
  // stop, saying what will happen; a second signal stops at once (src/signals.ts).
  let signal: NodeJS.Signals | undefined;
  let phase: TrainPhase = 'setup';
  const restoreSignals = onStopRequest((s) => {
    signal = s;
    bar.done();
    // Under mpirun every rank trains one update before they agree to stop (train's stopRequested).
    const what = WHAT_A_STOP_DOES[comm.size > 1 && phase === 'setup' ? 'training' : phase];
    if (isRoot) process.stderr.write(`${s}: ${what} (${s} again stops at once)\n`);
  });
  const eta = new Eta();
  try {
    const summary = await train({
      config,
      overridden,
      runDir,
      resume: opts.resume,
      force: opts.force,
      maxSteps: opts.maxSteps,
      stopAfter: opts.stopAfter,
      checkpointEvery: opts.checkpointEvery,
      comm,
      ...(opts.dumpBatches ? { dumpBatches: resolve(opts.dumpBatches) } : {}),
      stopRequested: () => signal,
      onPhase: (p) => {
        phase = p;
      },
      onLog: (line) => {
        if (isRoot) {
          bar.done();
          process.stderr.write(`${line}\n`);
        }
      },
      onUpdate: (m, total) => {
        injectFault(comm.rank, m.step);
        if (!isRoot) return;
        bar.update({
          fraction: m.step / total,
          text:
            `update ${m.step}/${total}  loss ${m.loss.toFixed(4)}  ` +
            `${formatCount(m.tokens_per_s)} tok/s  ETA ${eta.update(m.step, total)}`,
        });
      },
    });
    return { ...summary, ...(summary.stopped && signal ? { signal } : {}) };
  } catch (e) {
    // A write the disk refused (full, read-only): say how the run goes on once it is fixed.
    if (e instanceof OutputError && isRoot) {
      const last = (await import('../train/checkpoint.js')).latestCheckpoint(runDir);
      throw new OutputError(
        e.path,
        e.code,
        e.message,
        e.fix,
        last
          ? `then continue the run from ${last}: distill train --out ${runDir} --resume`
          : 'then start the run again (nothing of it was kept)',
      );
    }
    throw e;
  } finally {
    restoreSignals();
    bar.done();
    comm.finalize?.();
  }
}

/** What the first signal does, by what the run is doing when it comes. */
const WHAT_A_STOP_DOES: Record<TrainPhase, string> = {
  setup: 'stopping before the first update; nothing is trained or changed',
  preparing: 'stopping the corpus preparation; its complete shards are kept, and the next start continues them',
  training: 'stopping after this update, with a checkpoint',
  validating: 'stopping the validation, then checkpointing this update',
};

/**
 * Fault injection for the tests of data-parallel failures: DISTILL_FAULT="RANK:UPDATE:kill" makes that rank
 * die (SIGKILL) after that update, "RANK:UPDATE:hang" makes it stop answering. Unset in normal runs.
 */
function injectFault(rank: number, step: number): void {
  const spec = process.env['DISTILL_FAULT'];
  if (!spec) return;
  const [r, u, what] = spec.split(':');
  if (Number(r) !== rank || Number(u) !== step) return;
  if (what === 'kill') process.kill(process.pid, 'SIGKILL');
  if (what === 'hang') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
}

export function registerTrain(program: Command): void {
  program
    .command('train')
    .summary('run a distillation (checkpoints, exact --resume, MPI data-parallel)')
    .description(
      'Distil the teacher into the student as the config says (keys: see configs/distilbert-base-cased.json).\n' +
        'Writes RUN/metrics.jsonl (a line per update and per validation), RUN/checkpoints/step-N/ (the student as\n' +
        'a Hugging Face folder + optimizer + data position) every checkpoint_every updates and at the end.\n' +
        '--resume continues the latest complete checkpoint exactly, with the config recorded in it\n' +
        "(not --config's, which it does not need).\n" +
        ('--resume --set KEY=VALUE changes the keys that may change (lr, max_steps, checkpoint_every, loss weights, ' +
          '...;\n') +
        'printed and recorded in trainer_state.json and metrics.jsonl) and refuses the others (teacher, corpus,\n' +
        ('student, batches, masking), saying why. A longer (or shorter) max_steps on resume keeps the warm-up and ' +
          'decays\n') +
        ('the learning rate linearly from its current value to 0 at the new last update. Under mpirun, every rank ' +
          'trains\n') +
        ('data-parallel. Config keys, their meaning and defaults: configs/schema.json (a JSON Schema; editors ' +
          'validate\n') +
        'and complete a config whose "$schema" names it, as the shipped configs do).',
    )
    .option(
      '--config <file>',
      "run configuration (JSON); optional with --resume, which takes the run's own from its checkpoint",
    )
    .option('--out <dir>', 'run folder (default: runs/CONFIG_NAME, e.g. runs/tiny)')
    .option(
      '--max-steps <n>',
      'length of the run in updates (overrides max_steps; the learning-rate schedule spans it)',
      intOption('--max-steps', 1),
    )
    .option(
      '--stop-after <n>',
      'stop after this many updates in this invocation, with a checkpoint; --resume continues',
      intOption('--stop-after', 1),
    )
    .option(
      '--checkpoint-every <n>',
      'checkpoint every N updates (overrides checkpoint_every; 0 = only at the end)',
      intOption('--checkpoint-every', 0),
    )
    .option(
      '--resume',
      'continue the run in --out from its latest checkpoint (its ' +
        'config and architecture; --set changes what may change)',
      false,
    )
    .option(
      '--force',
      'start over in an --out that holds a run: the old run is moved to OUT.old-<time> (never deleted)',
      false,
    )
    .option('--set <key=value...>', 'override config keys, e.g. --set lr=1e-4 batch_size=8', [])
    .option(
      '--backend <name>',
      'student tfjs backend: tensorflow, wasm, cpu or webgpu (the config key "backend"; ' +
        'default: the best installed, webgpu only when named)',
    )
    .option(
      '--dump-batches <dir>',
      'write every micro-batch the student trains on (masked ids, mask, labels, dropout seed) into this new folder, ' +
        'one safetensors file each: to check a run against another implementation on the same batches',
    )
    .option(
      '--teacher-ep <ep>',
      'teacher execution provider: cpu, webgpu or cuda (the config key "teacher_ep"; default: cuda when installed, ' +
        'else webgpu with the webgpu backend, else cpu)',
    )
    .addHelpText(
      'after',
      '\nExamples:\n  distill train --config configs/tiny.json --out runs/tiny\n  distill train --out runs/tiny ' +
        '--resume\n' +
        '  distill train --out runs/tiny --resume --set lr=1e-4 max_steps=400',
    )
    .action(async (opts: TrainCommandOptions) => {
      const summary = await runTrain(opts);
      const root = (await worldFromEnvironment()).rank === 0;
      if (root) process.stdout.write(JSON.stringify(summary) + '\n');
      if (summary.signal) {
        // Stopped by a signal, after a checkpoint of the last update: say where, and how to go on.
        if (root) {
          process.stderr.write(
            `stopped by ${summary.signal} after update ${summary.steps} of ${summary.total_updates}; checkpoint: ` +
              `${summary.checkpoint ?? '(none)'}\n` +
              `continue with: distill train --out ${summary.run_dir} --resume\n`,
          );
        }
        process.exitCode = summary.signal === 'SIGINT' ? 130 : 143;
      }
    });
}
