// Resume that says what it does. `--resume` alone continues the run exactly as its checkpoint recorded it (its
// config, not the config file's). Changing the run is explicit: the keys given on the command line (`--set`,
// `--max-steps`, `--checkpoint-every`, `--backend`, `--teacher-ep`) replace the checkpoint's values when they
// may safely change, and are refused, naming why, when they would make it another run (CONFIG_SPEC's
// fixedOnResume). Differences between the config file and the
// checkpoint that were not asked for are named and ignored.

import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { MismatchError } from '../core/errors.js';
import { CONFIG_SPEC, configFrom, DEFAULT_CONFIG, type TrainConfig } from '../config.js';
import { checkpointToResume, readingCheckpoint, readTrainerState, type ResumeRecord } from './checkpoint.js';

/**
 * The config of the run in `runDir` as its latest checkpoint recorded it, with the command line's `overrides`:
 * what `distill train --resume --out RUN` continues when no --config is given.
 */
export function recordedConfig(runDir: string, overrides: string[]): TrainConfig {
  const checkpoint = checkpointToResume(runDir);
  const state = readingCheckpoint(runDir, checkpoint, readTrainerState);
  // Its paths are absolute (resolved when the run began); an override's relative path is taken from here.
  return configFrom(
    { ...state.config },
    overrides,
    `${join(checkpoint, 'trainer_state.json')} (its "config")`,
    process.cwd(),
  );
}

export interface ResumedConfig {
  config: TrainConfig;
  /** The keys the command line changed: old and new values (empty: the run continues exactly). */
  changed: ResumeRecord['changed'];
  /** Keys where the config file differs from the checkpoint without being asked for on the command line. */
  ignored: (keyof TrainConfig)[];
}

/**
 * The config a resumed run continues with: the checkpoint's (`saved`), with the keys in `asked` taken from
 * `given` (the config file plus the command line). Throws a MismatchError for a key that cannot change.
 */
export function resumedConfig(
  saved: TrainConfig,
  given: TrainConfig,
  asked: ReadonlySet<keyof TrainConfig>,
): ResumedConfig {
  // keys added since the checkpoint was written take their defaults
  const base: TrainConfig = { ...DEFAULT_CONFIG, ...saved };
  const config: TrainConfig = { ...base };
  const changed: ResumeRecord['changed'] = {};
  const ignored: (keyof TrainConfig)[] = [];
  for (const key of Object.keys(CONFIG_SPEC) as (keyof TrainConfig)[]) {
    if (isDeepStrictEqual(base[key], given[key])) continue;
    if (!asked.has(key)) {
      ignored.push(key);
      continue;
    }
    const fixed = CONFIG_SPEC[key].fixedOnResume;
    if (fixed) {
      throw new MismatchError(
        `--resume cannot change "${key}" (${JSON.stringify(base[key])} in the checkpoint, ` +
          `${JSON.stringify(given[key])} asked): ${fixed}`,
        `drop --set ${key}=... to continue the run, ` +
          `or start another run (another --out, or --force to move this one aside)`,
      );
    }
    changed[key] = { from: base[key], to: given[key] };
    (config as unknown as Record<string, unknown>)[key] = given[key];
  }
  return { config, changed, ignored };
}

/** "lr 0.0005 → 0.0001, max_steps 12 → 16" */
export function describeChanges(changed: ResumeRecord['changed']): string {
  return Object.entries(changed)
    .map(([k, { from, to }]) => `${k} ${JSON.stringify(from)} → ${JSON.stringify(to)}`)
    .join(', ');
}
