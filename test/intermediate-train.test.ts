// Students of any shape with the intermediate-layer losses, end to end: the teacher's attention tensors by graph
// surgery (checked against values computed from its weights), the error for a fused-attention export, and the
// acceptance run of #17: `alpha_attention: 1` with a 2-layer, half-width student on the tiny teacher trains,
// resumes exactly, and exports to ONNX that fill-mask serves.
import { beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Teacher } from '../teacher/teacher.js';
import { SafetensorsFile } from '../src/core/safetensors.js';
import type { DistillError } from '../src/core/errors.js';
import { onnx, readOnnx } from '../src/core/onnx.js';
import { loadConfig, type TrainConfig } from '../src/config.js';
import { train } from '../src/train/loop.js';
import { latestCheckpoint } from '../src/train/checkpoint.js';
import { publicDomainParagraphs } from '../corpus/public-domain.js';
import { runCli } from './cli-helpers.js';
import { GOLDEN, TINY, maxAbsDiff } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'distill-intermediate-'));

describe("the teacher's attention tensors, by graph surgery on the plain export", () => {
  const ref = SafetensorsFile.read(join(GOLDEN, 'reference.safetensors'));
  const [B, T] = ref.shapeOf('masked_input_ids') as [number, number];
  const mask = ref.getInt32('attention_mask');
  const batch = { inputIds: ref.getInt32('masked_input_ids'), attentionMask: mask, batchSize: B, seqLen: T };
  const H = 192;
  const A = 4;
  const d = H / A;

  it('q/k/v are the layer input times the weights; the probabilities are softmax(q·kᵀ/√d + mask)', async () => {
    expect(mask.includes(0)).toBe(true); // the golden batch has padding: the mask is exercised
    const teacher = await Teacher.load(TINY, {
      threads: 1,
      hiddenStates: 'all',
      attentionLayers: [2],
      projections: [
        { layer: 2, kind: 'query' },
        { layer: 2, kind: 'key' },
        { layer: 2, kind: 'value' },
      ],
    });
    const out = await teacher.forward(batch);
    await teacher.release();
    expect(Object.keys(out.intermediate).sort()).toEqual(['attention.2', 'key.2', 'query.2', 'value.2']);
    // The projections from the input of layer 2 (hidden state 2) and the safetensors weights, on the host.
    const w = SafetensorsFile.read(join(TINY, 'model.safetensors'));
    const x = out.hiddenStates[2]!; // [B*T, H]
    for (const [kind, name] of [
      ['query', 'query'],
      ['key', 'key'],
      ['value', 'value'],
    ] as const) {
      const W = w.getFloat32(`bert.encoder.layer.2.attention.self.${name}.weight`); // [out, in]
      const bias = w.getFloat32(`bert.encoder.layer.2.attention.self.${name}.bias`);
      const want = new Float32Array(B * T * H);
      for (let r = 0; r < B * T; r++)
        for (let o = 0; o < H; o++) {
          let s = bias[o]!;
          for (let i = 0; i < H; i++) s += x[r * H + i]! * W[o * H + i]!;
          want[r * H + o] = s;
        }
      expect(maxAbsDiff(out.intermediate[`${kind}.2`]!, want), kind).toBeLessThan(1e-4);
    }
    // The probabilities from the graph's own q and k: rows sum to 1, padding keys get 0.
    const q = out.intermediate['query.2']!;
    const k = out.intermediate['key.2']!;
    const probs = out.intermediate['attention.2']!; // [B, A, T, T]
    let worst = 0;
    for (let b = 0; b < B; b++)
      for (let a = 0; a < A; a++)
        for (let i = 0; i < T; i++) {
          const scores = Array.from({ length: T }, (_, j) => {
            if (mask[b * T + j] === 0) return -Infinity;
            let s = 0;
            for (let c = 0; c < d; c++) s += q[(b * T + i) * H + a * d + c]! * k[(b * T + j) * H + a * d + c]!;
            return s / Math.sqrt(d);
          });
          const m = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - m));
          const z = e.reduce((u, v) => u + v, 0);
          e.forEach((v, j) => {
            worst = Math.max(worst, Math.abs(probs[((b * A + a) * T + i) * T + j]! - v / z));
          });
        }
    expect(worst).toBeLessThan(1e-5);
  });

  it('an export with attention fused into one operator: the error names the operator and what to export', async () => {
    const dir = join(work, 'fused-teacher');
    mkdirSync(dir);
    for (const f of readdirSync(TINY)) if (f !== 'model.onnx') copyFileSync(join(TINY, f), join(dir, f));
    // The plain graph plus one node of onnxruntime's fused Attention operator (what an O2+ optimised export holds).
    const model = readOnnx(join(TINY, 'model.onnx')).model;
    model.graph!.node!.push(
      onnx.NodeProto.create({
        opType: 'Attention',
        domain: 'com.microsoft',
        input: ['a', 'b', 'c'],
        output: ['fused_out'],
      }),
    );
    writeFileSync(join(dir, 'model.onnx'), onnx.ModelProto.encode(model).finish());
    await expect(Teacher.load(dir, { attentionLayers: [0] })).rejects.toThrow(
      /fused into onnxruntime's "Attention" operator[\s\S]*/,
    );
    const error = await Teacher.load(dir, { attentionLayers: [0] }).then(
      () => undefined,
      (e: unknown) => e as DistillError,
    );
    expect(error?.hint).toMatch(/without --optimize/);
  });
});

describe('a 2-layer, half-width student with alpha_attention 1 (the acceptance run of #17)', () => {
  const configPath = join(work, 'config.json');
  const config = (extra: Partial<TrainConfig> = {}): TrainConfig =>
    loadConfig(
      configPath,
      Object.entries(extra).map(([k, v]) => `${k}=${JSON.stringify(v)}`),
    );
  beforeAll(() => {
    const text = join(work, 'moby.txt');
    writeFileSync(text, publicDomainParagraphs('moby-dick').slice(0, 300).join('\n') + '\n');
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
        seed: 11,
        lr: 1e-3,
        student: { layers: 2, hidden: 96, heads: 4, intermediate: 384 },
        alpha_attention: 1,
      }),
    );
  });

  const metrics = (runDir: string): Record<string, number>[] =>
    readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>)
      .filter((m) => m['loss'] !== undefined);
  const bytesOf = (dir: string, file: string): Map<string, Buffer> => {
    const f = SafetensorsFile.read(join(dir, file));
    return new Map(f.names().map((n) => [n, Buffer.from(f.getFloat32(n).buffer)]));
  };

  it(
    'trains, resumes exactly (losses, weights, projection, moments), ' +
      'exports to ONNX without the projection, and fill-mask serves it',
    async () => {
      const straight = join(work, 'straight');
      await train({ config: config(), runDir: straight, resume: false });
      const m = metrics(straight);
      expect(m.length).toBe(4);
      for (const line of m) {
        expect(line['loss_att']).toBeGreaterThan(0);
        expect(line).not.toHaveProperty('loss_hidden'); // alpha_hidden 0: not computed, not reported
      }
      const ck = latestCheckpoint(straight)!;
      const cfg = JSON.parse(readFileSync(join(ck, 'config.json'), 'utf8')) as Record<string, unknown>;
      expect([cfg['dim'], cfg['n_layers'], cfg['n_heads'], cfg['hidden_dim'], cfg['distill_projection_dim']]).toEqual([
        96, 2, 4, 384, 192,
      ]);
      // the projection's weight and bias, beside the model
      expect(bytesOf(ck, 'distill_projection.safetensors').size).toBe(2);
      expect([...bytesOf(ck, 'model.safetensors').keys()].some((n) => n.startsWith('distill.'))).toBe(false);

      const split = join(work, 'split');
      await train({ config: config(), runDir: split, resume: false, stopAfter: 2 });
      await train({ config: config(), runDir: split, resume: true });
      expect(metrics(split).map((l) => [l['loss'], l['loss_att']])).toEqual(m.map((l) => [l['loss'], l['loss_att']]));
      for (const file of ['model.safetensors', 'distill_projection.safetensors', 'optimizer.safetensors']) {
        const a = bytesOf(ck, file);
        const b = bytesOf(latestCheckpoint(split)!, file);
        expect([...a.keys()]).toEqual([...b.keys()]);
        for (const [name, v] of a) expect(v.equals(b.get(name)!), `${file} ${name}`).toBe(true);
      }

      const onnxDir = join(work, 'onnx');
      const exported = runCli(['export', '--student', ck, '--out', onnxDir]);
      expect(exported.status, exported.stderr).toBe(0);
      expect(existsSync(join(onnxDir, 'distill_projection.safetensors'))).toBe(false);
      expect(JSON.parse(readFileSync(join(onnxDir, 'config.json'), 'utf8'))).not.toHaveProperty(
        'distill_projection_dim',
      );
      // distill eval against the teacher: the checkpoint (tfjs) compares hidden states through its projection; the
      // export (no projection, width 96 against 192) gives the same losses and agreement, and no cosine.
      const evalArgs = ['--teacher', TINY, '--corpus', join(work, 'corpus'), '--sequences', '16', '--seed', '3'];
      const viaTfjs = runCli(['eval', '--model', ck, ...evalArgs]);
      expect(viaTfjs.status, viaTfjs.stderr).toBe(0);
      const viaOnnx = runCli(['eval', '--model', onnxDir, ...evalArgs]);
      expect(viaOnnx.status, viaOnnx.stderr).toBe(0);
      const [mt, mo] = [JSON.parse(viaTfjs.stdout), JSON.parse(viaOnnx.stdout)] as Record<string, number | null>[];
      expect(mt!['val_cos']).toBeGreaterThan(-1);
      expect(mo!['val_cos']).toBeNull();
      for (const k of ['val_loss', 'val_acc', 'val_agree', 'val_kl'])
        expect(Math.abs(mo![k]! - mt![k]!), k).toBeLessThan(1e-4);
      const r = runCli(['fill-mask', '--model', onnxDir, '--text', 'Call me [MASK].', '--scores', '--top-k', '3']);
      expect(r.status, r.stderr).toBe(0);
      const preds = JSON.parse(r.stdout) as { token: string; score: number }[][];
      expect(preds[0]!.length).toBe(3);
      expect(preds[0]![0]!.score).toBeGreaterThanOrEqual(preds[0]![1]!.score);
    },
    300_000,
  );

  it(
    'a narrower student folder from init-student --shape gets its ' +
      'projection when training starts (alpha_hidden, value relations)',
    async () => {
      const folder = join(work, 'shaped');
      const made = runCli([
        'init-student',
        '--teacher',
        TINY,
        '--out',
        folder,
        '--shape',
        '2,96,2,192',
        '--random-init',
        '5',
        '--no-onnx',
      ]);
      expect(made.status, made.stderr).toBe(0);
      expect(existsSync(join(folder, 'distill_projection.safetensors'))).toBe(false); // made by the run, from its seed
      const runDir = join(work, 'from-folder');
      await train({
        config: config({
          student: folder,
          alpha_attention: 1,
          alpha_hidden: 1,
          alpha_value_relation: 1,
          max_steps: 2,
          checkpoint_every: 0,
        }),
        runDir,
        resume: false,
      });
      const m = metrics(runDir);
      for (const key of ['loss_hidden', 'loss_att', 'loss_vr']) expect(m[0]![key], key).toBeGreaterThan(0);
      expect(bytesOf(latestCheckpoint(runDir)!, 'distill_projection.safetensors').size).toBe(2);
    },
    120_000,
  );

  it("refuses teacher_layers for a shape that is not the teacher's, naming the keys", async () => {
    await expect(
      train({
        config: config({ student: { layers: 2, hidden: 96, heads: 4, intermediate: 384, teacher_layers: [0, 3] } }),
        runDir: join(work, 'bad'),
        resume: false,
      }),
    ).rejects.toThrow(/"teacher_layers" copies teacher layers, but "hidden" 96 differs from the teacher's 192/);
  });
});
