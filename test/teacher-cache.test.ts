// teacher_cache (teacher/cache.ts): the teacher's top-k outputs on the training batches, kept on disk and read back
// by a later run on the same batches instead of running the teacher.
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type TrainConfig } from '../src/config.js';
import { train } from '../src/train/loop.js';
import { latestCheckpoint } from '../src/train/checkpoint.js';
import { publicDomainParagraphs } from '../corpus/public-domain.js';
import { TeacherCache } from '../teacher/cache.js';
import { expectCleanError, runCli } from './cli-helpers.js';
import { TINY } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'distill-teacher-cache-'));
const configPath = join(work, 'config.json');
const cacheDir = join(work, 'teacher-cache');
const config = (extra: Partial<TrainConfig> = {}): TrainConfig =>
  loadConfig(
    configPath,
    Object.entries(extra).map(([k, v]) => `${k}=${JSON.stringify(v)}`),
  );
const losses = (runDir: string): number[][] =>
  readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>)
    .filter((m) => m['loss'] !== undefined)
    .map((m) => [m['loss']!, m['loss_ce']!, m['loss_cos']!, m['grad_norm']!]);
const weights = (runDir: string): Buffer => readFileSync(join(latestCheckpoint(runDir)!, 'model.safetensors'));

describe('teacher_cache', () => {
  beforeAll(() => {
    const text = join(work, 'moby.txt');
    writeFileSync(text, publicDomainParagraphs('moby-dick').slice(0, 200).join('\n') + '\n');
    writeFileSync(
      configPath,
      JSON.stringify({
        teacher: TINY,
        corpus: join(work, 'corpus'),
        corpus_inputs: [text],
        max_length: 48,
        batch_size: 4,
        grad_accum: 2,
        max_steps: 4,
        checkpoint_every: 2,
        backend: 'wasm',
        teacher_threads: 1,
        seed: 5,
        soft_targets_topk: 8,
        alpha_mse: 0,
        teacher_cache: cacheDir,
      }),
    );
  });

  it(
    'a first run stores one entry per batch; a second reads them ' +
      'all and trains bit-identically; a resumed run reads them too',
    async () => {
      const plain = join(work, 'plain');
      await train({ config: config({ teacher_cache: null }), runDir: plain, resume: false });
      const first = join(work, 'first');
      const a = await train({ config: config(), runDir: first, resume: false });
      expect(a.teacher_cache).toMatchObject({ hits: 0, misses: 8 }); // 4 updates × grad_accum 2
      const entries = readdirSync(a.teacher_cache!.dir, { recursive: true }).filter((f) =>
        String(f).endsWith('.arrow'),
      );
      expect(entries.length).toBe(8);
      const second = join(work, 'second');
      const b = await train({ config: config(), runDir: second, resume: false });
      expect(b.teacher_cache).toMatchObject({ hits: 8, misses: 0 });
      // What the cache gives back is what the teacher computed: the three runs agree to the bit.
      expect(losses(first)).toEqual(losses(plain));
      expect(losses(second)).toEqual(losses(plain));
      expect(weights(second).equals(weights(plain))).toBe(true);
      // Stopped after update 2 and resumed: every batch from the cache, the same run.
      const split = join(work, 'split');
      const s1 = await train({ config: config(), runDir: split, resume: false, stopAfter: 2 });
      const s2 = await train({ config: config(), runDir: split, resume: true });
      expect(s1.teacher_cache!.misses + s2.teacher_cache!.misses).toBe(0);
      expect(losses(split)).toEqual(losses(plain));
    },
  );

  it(
    'other batches (another seed: other masks and order) ' +
      "or another k miss; the entries hold the teacher's k values per row",
    async () => {
      const other = await train({
        config: config({ seed: 6, max_steps: 1 }),
        runDir: join(work, 'seed6'),
        resume: false,
      });
      expect(other.teacher_cache).toMatchObject({ hits: 0, misses: 2 });
      const k4 = await train({
        config: config({ soft_targets_topk: 4, max_steps: 1 }),
        runDir: join(work, 'k4'),
        resume: false,
      });
      expect(k4.teacher_cache).toMatchObject({ hits: 0, misses: 2 });
      expect(k4.teacher_cache!.dir).not.toBe(other.teacher_cache!.dir); // another k: another folder
      const identity = JSON.parse(readFileSync(join(k4.teacher_cache!.dir, 'identity.json'), 'utf8')) as {
        topk: number;
        executionProvider: string;
      };
      expect([identity.topk, identity.executionProvider]).toEqual([4, 'cpu']);
    },
  );

  it(
    'an entry reads back what was stored; another token, mask or row set misses; ' +
      'a damaged entry is an error naming the file and the fix',
    async () => {
      const cache = TeacherCache.open(join(work, 'damaged'), {
        teacherDir: TINY,
        temperature: 2,
        topk: 8,
        executionProvider: 'cpu',
        outputs: [],
      });
      const req = {
        inputIds: new Int32Array([2, 5, 3]),
        attentionMask: new Int32Array([1, 1, 1]),
        batchSize: 1,
        seqLen: 3,
        softRows: new Int32Array([0, 1, 2]),
        keepLogits: false,
        fullLogits: false,
      };
      const out = {
        lastHidden: new Float32Array(3 * 192).fill(0.5),
        soft: {
          temperature: 2,
          probs: new Float32Array(24).fill(0.1),
          topkIds: new Int32Array(24).fill(7),
          negEntropy: new Float64Array(3).fill(-1.5),
        },
        intermediate: { 'hidden.2': new Float32Array(6).fill(2) },
      };
      const got = await cache.forward(req, () => Promise.resolve(out));
      expect(got).toBe(out);
      const back = await cache.forward(req, () => Promise.reject(new Error('the teacher must not run')));
      expect(back.lastHidden).toEqual(out.lastHidden);
      expect(back.soft.probs).toEqual(out.soft.probs);
      expect(back.soft.topkIds).toEqual(out.soft.topkIds);
      expect(back.soft.negEntropy).toEqual(out.soft.negEntropy);
      expect(back.intermediate).toEqual(out.intermediate);
      // Another token, or another row set for the KL, is another request: the teacher runs.
      let runs = 0;
      const count = (): Promise<typeof out> => {
        runs++;
        return Promise.resolve(out);
      };
      await cache.forward({ ...req, inputIds: new Int32Array([2, 6, 3]) }, count);
      await cache.forward({ ...req, softRows: new Int32Array([0, 1]) }, count);
      await cache.forward({ ...req, attentionMask: new Int32Array([1, 1, 0]) }, count);
      expect(runs).toBe(3);
      expect(cache.hits).toBe(1);
      writeFileSync(cache.entryPath(req), 'not arrow');
      await expect(cache.forward(req, () => Promise.resolve(out))).rejects.toThrow(
        /teacher_cache: .*\.arrow is not a readable entry/,
      );
    },
  );

  it('needs top-k soft targets: the config says which key to set', () => {
    const r = runCli(['train', '--config', configPath, '--set', 'soft_targets_topk=0', '--out', join(work, 'refused')]);
    expectCleanError(r, /"teacher_cache" is set but "soft_targets_topk" is 0/);
  });
});
