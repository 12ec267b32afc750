// distill prepare: raw text → Arrow token shards (see corpus/prepare.ts for the rules).

import type { Command } from 'commander';
import { InputError } from '../core/errors.js';
import { OutputError } from '../core/out.js';
import { choiceOption, intOption } from '../options.js';
import { formatCount, ProgressReporter } from '../progress.js';
import { onStopRequest } from '../signals.js';
import type { CorpusMeta } from '../../corpus/prepare.js';

export interface PrepareCommandOptions {
  tokenizer: string;
  out: string;
  maxLength?: number;
  shardSequences: number;
  minLength: number;
  onBadLine: 'error' | 'skip';
  workers: number | 'auto';
}

/**
 * The library's prepareForModel with a progress bar, and Ctrl-C or SIGTERM stopping it with its complete shards kept.
 */
async function runPrepare(inputs: string[], opts: PrepareCommandOptions): Promise<CorpusMeta> {
  // Apache Arrow: loaded to run, not for --help
  const { prepareForModel } = await import('../../corpus/prepare-for-model.js');
  const bar = new ProgressReporter('prepare');
  let signal: NodeJS.Signals | undefined;
  const restoreSignals = onStopRequest((s) => {
    signal = s;
    bar.done();
    process.stderr.write(
      `${s}: stopping the preparation; the complete shards are kept and ` +
        `the same command continues from them (${s} again stops at once)\n`,
    );
  });
  try {
    return await prepareForModel(inputs, {
      ...opts,
      stopRequested: () => signal,
      onNote: (line) => {
        bar.done();
        process.stderr.write(`${line}\n`);
      },
      onProgress: (p) =>
        bar.update({
          fraction: p.totalBytes ? p.bytesRead / p.totalBytes : undefined,
          text:
            `${(p.bytesRead / 1e6 / Math.max(p.elapsedS, 1e-3)).toFixed(1)} MB/s  ` +
            `${formatCount(p.tokens / Math.max(p.elapsedS, 1e-3))} tok/s  ` +
            `${formatCount(p.sequences)} seqs`,
        }),
    });
  } catch (e) {
    // A write the disk refused: the complete shards stay, and the same command continues from them.
    if (e instanceof OutputError)
      throw new OutputError(
        e.path,
        e.code,
        e.message,
        e.fix,
        'then run the same command again: it continues from the last complete shard',
      );
    throw e;
  } finally {
    bar.done();
    restoreSignals();
  }
}

const workerCount = intOption('--workers', 0, 256);

/** --workers: auto, or what intOption takes, with a message that names both. */
function workersOption(value: string): number | 'auto' {
  if (value.trim() === 'auto') return 'auto';
  try {
    return workerCount(value);
  } catch {
    throw new InputError(
      `--workers ${JSON.stringify(value)}: expected auto or a whole number from 0 to 256`,
      'auto starts one tokenizing thread per core (at most 8) ' +
        'for 4 MB of input or more; 0 tokenizes on the main thread',
    );
  }
}

export function registerPrepare(program: Command): void {
  program
    .command('prepare')
    .summary('tokenize raw text into Arrow shards')
    .description(
      'Tokenize raw text into Arrow shards for training. Inputs: .txt (one sequence per line) and .jsonl\n' +
        '({"text": ...} per line), optionally .gz, files or folders (read in sorted order). Each line becomes\n' +
        '[CLS] … [SEP]; longer lines are cut into --max-length chunks; sequences of ≤ 11 tokens or ≥ 50% [UNK] are\n' +
        'dropped. Writes shard-NNNNN.arrow, token_counts.safetensors and meta.json (last). Rerunning an interrupted\n' +
        ('run (Ctrl-C, SIGTERM, a full disk) continues from its last complete shard; the same inputs give ' +
          'byte-identical\n') +
        ('shards. A line over 1 MB is a bad line (--on-bad-line). --out is a new or empty folder, or the corpus ' +
          'being\n') +
        'prepared there; one prepare at a time writes into it.',
    )
    .argument('<inputs...>', 'text files or folders')
    .requiredOption('--tokenizer <dir>', 'folder with tokenizer.json or vocab.txt (a teacher folder)')
    .requiredOption('--out <dir>', 'output folder for the shards')
    .option(
      '--max-length <n>',
      'longest sequence in tokens, [CLS]/[SEP] included (default: the positions of the model in --tokenizer, e.g. ' +
        '512 for BERT; 512 without its config.json)',
      intOption('--max-length', 3, 1 << 20),
    )
    .option(
      '--min-length <n>',
      'drop sequences shorter than this, [CLS]/[SEP] included (12: the reference drops ≤ 11)',
      intOption('--min-length', 0),
      12,
    )
    .option('--shard-sequences <n>', 'sequences per shard file', intOption('--shard-sequences', 1), 50_000)
    .option(
      '--on-bad-line <what>',
      'a line that is binary, not UTF-8, broken JSONL or over 1 MB: ' +
        'error (stop, naming file:line) or skip (counted in meta.json)',
      choiceOption('--on-bad-line', ['error', 'skip'] as const),
      'error',
    )
    .option(
      '--workers <n>',
      'threads that tokenize beside the one reading and writing: a count (0: one thread does all), or auto: one per ' +
        'core, ' +
        'at most 8, for 4 MB of input or more (else 0); the shards are the same whatever the count',
      workersOption,
      'auto',
    )
    .action(async (inputs: string[], opts: PrepareCommandOptions) => {
      const meta = await runPrepare(inputs, opts);
      process.stdout.write(
        JSON.stringify({
          out: opts.out,
          lines_read: meta.lines_read,
          sequences: meta.sequences,
          tokens: meta.tokens,
          shards: meta.shards.length,
          skipped: meta.skipped,
        }) + '\n',
      );
    });
}
