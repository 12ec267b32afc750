// The train command itself against PyTorch (test/fixtures/train-run/, made by make_train_reference.py): `distill train`
// on the reference's config (its own set-up: the student from the teacher's layers, AdamW from betas, eps and
// weight_decay on the recipe's groups, the schedule from warmup_prop, grad_accum, clipping, dropout with its seeds)
// trains on exactly the micro-batches PyTorch trained on (it writes them again, --dump-batches: byte-identical), and
// its per-update losses, gradient norms and learning rates and its final weights agree with PyTorch's.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../src/core/safetensors.js';
import { runCli } from './cli-helpers.js';
import { REPO, expectWeightsAgree, folderWeights, relDiff, weightDifference } from './helpers.js';
import reference from './fixtures/train-run/reference.json' with { type: 'json' };

const FIXTURE = join(REPO, 'test', 'fixtures', 'train-run');

describe('distill train against PyTorch on the batches it trains on', () => {
  it(
    'the same micro-batches, and the same losses, gradient norms, ' + 'learning rates and final weights (8 updates)',
    () => {
      const work = mkdtempSync(join(tmpdir(), 'distill-train-reference-'));
      const config = join(work, 'config.json');
      writeFileSync(
        config,
        JSON.stringify({ ...reference.config, teacher: join(REPO, reference.teacher), corpus: join(work, 'corpus') }),
      );
      const runDir = join(work, 'run');
      const dumped = join(work, 'batches');
      const r = runCli(['train', '--config', config, '--out', runDir, '--dump-batches', dumped]);
      expect(r.status, r.stderr).toBe(0);

      // The batches: those PyTorch was given, byte for byte (masked ids, mask, labels, dropout seeds).
      const files = readdirSync(join(FIXTURE, 'batches')).sort();
      expect(readdirSync(dumped).sort()).toEqual(files);
      for (const f of files)
        expect(readFileSync(join(dumped, f)).equals(readFileSync(join(FIXTURE, 'batches', f))), f).toBe(true);

      // Per update: losses within 1e-4 relative, the gradient norm within 1e-3, the lr exactly (as the replays).
      const metrics = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, number>);
      expect(metrics).toHaveLength(reference.records.length);
      metrics.forEach((m, u) => {
        const want = reference.records[u]!;
        for (const k of ['loss', 'loss_ce', 'loss_mlm', 'loss_cos'] as const) {
          expect(relDiff(m[k]!, want[k]), `update ${u + 1} ${k}: ${m[k]} vs PyTorch ${want[k]}`).toBeLessThan(1e-4);
        }
        expect(relDiff(m['grad_norm']!, want.grad_norm), `update ${u + 1} grad_norm`).toBeLessThan(1e-3);
        expect(m['lr']).toBeCloseTo(want.lr, 12);
      });

      // Final weights: within 2·Σ lr_t everywhere and 2.5e-4 lr RMS, the unseen replay's bound (test/updates.ts: the
      // same teacher, batches and step).
      const final = SafetensorsFile.read(join(FIXTURE, 'final.safetensors'));
      const want = new Map(final.names().map((n) => [n, final.getFloat32(n)]));
      const got = folderWeights(
        join(runDir, 'checkpoints', `step-${String(reference.records.length).padStart(8, '0')}`),
      );
      const d = weightDifference(got, want, reference.config.lr);
      console.log(JSON.stringify({ train_reference: d }));
      expectWeightsAgree(
        d,
        metrics.map((m) => m['lr']!),
        reference.config.lr,
        2.5e-4,
      );
    },
  );
});
