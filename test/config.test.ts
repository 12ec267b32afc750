// The run configuration (src/config.ts): unknown keys and wrong types named, overrides, the shipped configs, the
// schema generated from the spec, the checks across keys, and the learning-rate schedule.
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configJsonSchema, loadConfig, validateConfig, type TrainConfig } from '../src/config.js';
import { linearWarmupDecay } from '../src/train/adamw.js';
import { LOSS_WEIGHT_KEYS } from '../losses/record.js';
import { REPO, TINY } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'distill-config-'));
const configPath = join(work, 'config.json');

function config(extra: Partial<TrainConfig> = {}): TrainConfig {
  return loadConfig(
    configPath,
    Object.entries(extra).map(([k, v]) => `${k}=${JSON.stringify(v)}`),
  );
}

beforeAll(() => {
  writeFileSync(configPath, JSON.stringify({ teacher: TINY, corpus: join(work, 'corpus'), max_steps: 4 }));
});

describe('config', () => {
  it('names an unknown key, a wrong type and a bad override', () => {
    expect(() => validateConfig({ teacher: 'a', corpus: 'b', learning_rate: 1 }, 'x.json')).toThrow(
      /x\.json: unknown key "learning_rate"/,
    );
    expect(() => validateConfig({ teacher: 'a', corpus: 'b', batchsize: 1 }, 'x.json')).toThrow(
      /unknown key "batchsize"/,
    );
    expect(() => validateConfig({ teacher: 'a', corpus: 'b', batch_size: '8' }, 'x.json')).toThrow(
      /key "batch_size" is "8": expected a whole number/,
    );
    expect(() => validateConfig({ teacher: 'a', corpus: 'b', betas: [0.9] }, 'x.json')).toThrow(/key "betas"/);
    expect(() => validateConfig({ corpus: 'b' }, 'x.json')).toThrow(/key "teacher" is missing/);
    expect(() => validateConfig({ teacher: 'a', corpus: 'b', word_mask: 0.5 }, 'x.json')).toThrow(/sum to 0\.7/);
    expect(config({ lr: 1e-3 }).lr).toBe(1e-3);
    expect(() => loadConfig(configPath, ['lr'])).toThrow(/--set "lr": expected KEY=VALUE/);
    // A key given with --set is named as the option's, not as the file's, fault; the file's own keys as the file's.
    expect(() => loadConfig(configPath, ['lr=fast'])).toThrow(/^--set: key "lr" is "fast"/);
    expect(() => validateConfig({ teacher: 'a', corpus: 'b', lr: 'fast' }, 'x.json', new Set(['batch_size']))).toThrow(
      /^x\.json: key "lr" is "fast"/,
    );
  });

  it('refuses nonsense before a run starts: every loss weight 0, the training corpus as the validation corpus', () => {
    const zero = { alpha_ce: 0, alpha_mlm: 0, alpha_cos: 0 };
    expect(() => validateConfig({ teacher: 'a', corpus: 'b', ...zero }, 'x.json')).toThrow(
      // Every weight of losses/record.ts, named: the four of the recipe first.
      new RegExp(
        'x\\.json: every loss weight is 0 \\(alpha_ce, alpha_mlm, alpha_cos, alpha_mse, ' +
          `${LOSS_WEIGHT_KEYS.slice(4).join(', ')}\\)`,
      ),
    );
    expect(validateConfig({ teacher: 'a', corpus: 'b', ...zero, alpha_attention: 1 }, 'x.json').alpha_attention).toBe(
      1,
    ); // any one weight will do
    expect(() => config({ valid_corpus: join(work, 'corpus', '.') })).toThrow(/"valid_corpus" is the training corpus/);
    expect(config({ valid_corpus: join(work, 'other-corpus') }).valid_corpus).toBe(join(work, 'other-corpus'));
  });

  it('ships configs that validate, with relative paths resolved against the config', () => {
    const tiny = loadConfig(join(REPO, 'configs', 'tiny.json'));
    expect(tiny.teacher).toBe(TINY);
    expect(loadConfig(join(REPO, 'configs', 'tiny-narrow.json'))).toMatchObject({
      student: { layers: 2, hidden: 96, heads: 4, intermediate: 384 },
      alpha_attention: 1,
      alpha_value_relation: 1,
    });
    const base = loadConfig(join(REPO, 'configs', 'distilbert-base-cased.json'));
    expect(base).toMatchObject({
      batch_size: 5,
      grad_accum: 50,
      lr: 5e-4,
      betas: [0.9, 0.98],
      eps: 1e-6,
      student: [0, 2, 4, 7, 9, 11],
      seed: 56,
      alpha_ce: 5,
      alpha_mlm: 2,
      alpha_cos: 1,
    });
  });

  it('configs/schema.json is generated from the config spec, and the shipped configs name it', () => {
    expect(JSON.parse(readFileSync(join(REPO, 'configs', 'schema.json'), 'utf8'))).toEqual(configJsonSchema());
    for (const name of ['tiny.json', 'tiny-narrow.json', 'distilbert-base-cased.json']) {
      expect((JSON.parse(readFileSync(join(REPO, 'configs', name), 'utf8')) as { $schema: string }).$schema).toBe(
        './schema.json',
      );
    }
    const schema = configJsonSchema() as { properties: Record<string, { description?: string }> };
    for (const [key, p] of Object.entries(schema.properties)) expect(p.description, key).toBeTruthy();
    expect(() => validateConfig({ teacher: 'a', corpus: 'b', betas: [0.9, 1] }, 'x.json')).toThrow(
      /key "betas" is \[0\.9,1\]: expected a list of 2, each a number ≥ 0 < 1/,
    );
  });

  it('warms up linearly then decays linearly to 0', () => {
    expect([0, 1, 2, 3, 4, 5, 6].map((d) => linearWarmupDecay(d, 2, 6))).toEqual([0, 0.5, 1, 0.75, 0.5, 0.25, 0]);
  });
});
