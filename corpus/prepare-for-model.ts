// Preparing a corpus for a model, as `distill prepare` does (the library's `prepare`): the tokenizer of a model folder,
// sequences that fit its positions, then corpus/prepare.ts's rules. The command adds a progress bar and its signals.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../src/core/errors.js';
import { assertModelDir, readEncoderConfig } from '../src/core/model-dir.js';
import { MIN_KEPT_LENGTH, prepareCorpus, type CorpusMeta, type PrepareProgress } from './prepare.js';
import { WordPieceTokenizer } from './tokenizer.js';

export interface PrepareForModelOptions {
  /** The model folder whose tokenizer (tokenizer.json or vocab.txt) tokenizes the text. */
  tokenizer: string;
  /** The corpus folder to write (new, empty, or a corpus being prepared there). */
  out: string;
  /**
   * Longest sequence, [CLS]/[SEP] included; absent:
   * the model's positions (config.json max_position_embeddings), else 512.
   */
  maxLength?: number;
  /** Sequences per shard file (50,000). */
  shardSequences?: number;
  /** Sequences shorter than this are dropped (12: the reference keeps lengths > 11). */
  minLength?: number;
  /** A line that is binary, not UTF-8, broken JSONL or over 1 MB: stop ('error', the default) or skip and count it. */
  onBadLine?: 'error' | 'skip';
  /** Tokenizing threads: a count (0: the calling thread alone) or 'auto' (the default). */
  workers?: number | 'auto';
  onProgress?: (p: PrepareProgress) => void;
  /** Notes for the user (an input named twice). */
  onNote?: (line: string) => void;
  /** Asked as lines are read: a signal named stops the preparation (the complete shards stay). */
  stopRequested?: () => NodeJS.Signals | undefined;
}

/** Prepare `inputs` (files or folders of .txt / .jsonl, optionally .gz) into `out` for the model in `tokenizer`. */
export async function prepareForModel(inputs: string[], opts: PrepareForModelOptions): Promise<CorpusMeta> {
  assertModelDir(opts.tokenizer, '--tokenizer');
  const tok = WordPieceTokenizer.fromDir(opts.tokenizer);
  // The sequences must fit the model the tokenizer belongs to: at most its positions.
  const positions = existsSync(join(opts.tokenizer, 'config.json'))
    ? readEncoderConfig(opts.tokenizer).maxPositions
    : undefined;
  const maxLength = opts.maxLength ?? positions ?? 512;
  const minLength = opts.minLength ?? MIN_KEPT_LENGTH;
  if (positions !== undefined && maxLength > positions) {
    throw new InputError(
      `--max-length ${maxLength} is more than the ${positions} positions of the model in ${opts.tokenizer} ` +
        '(config.json max_position_embeddings)',
      `leave --max-length out (it defaults to ${positions}) or give at most ${positions}`,
    );
  }
  if (maxLength < minLength) {
    throw new InputError(
      `--max-length ${maxLength} is below --min-length ${minLength}: ` +
        `every sequence would be cut into pieces too short to keep`,
      `raise --max-length (the model takes up to ${positions ?? 512} tokens) or lower --min-length`,
    );
  }
  return prepareCorpus(tok, {
    outDir: opts.out,
    inputs,
    maxLength,
    minLength,
    shardSequences: opts.shardSequences ?? 50_000,
    onBadLine: opts.onBadLine ?? 'error',
    workers: opts.workers ?? 'auto',
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    ...(opts.onNote ? { onNote: opts.onNote } : {}),
    ...(opts.stopRequested ? { stopRequested: opts.stopRequested } : {}),
  });
}
