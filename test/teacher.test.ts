import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Teacher, placementError } from '../teacher/teacher.js';
import { SafetensorsFile } from '../src/core/safetensors.js';
import { MismatchError, FileFormatError } from '../src/core/errors.js';
import { selectSoftRows, selectTopkRows, teacherSoftTargets, topkOfSoftTargets } from '../src/core/soft-targets.js';
import * as ort from 'onnxruntime-node';
import { onnx } from '../src/core/onnx.js';
import {
  GOLDEN,
  TINY,
  maxAbsDiff,
  negEntropyBound,
  softTargetModel,
  tiedLogits,
  underflowingLogits,
} from './helpers.js';

const ref = SafetensorsFile.read(join(GOLDEN, 'reference.safetensors'));
const [B, T] = ref.shapeOf('masked_input_ids') as [number, number];
const batch = {
  inputIds: ref.getInt32('masked_input_ids'),
  attentionMask: ref.getInt32('attention_mask'),
  batchSize: B,
  seqLen: T,
};
const refLogits = ref.getFloat32('teacher_logits');
const refHidden = ref.getFloat32('teacher_hidden_states'); // [5, B, T, H]
const H = 192;

function checkAgainstReference(out: { logits: Float32Array; hiddenStates: Float32Array[] }): void {
  expect(out.logits.length).toBe(refLogits.length);
  expect(maxAbsDiff(out.logits, refLogits)).toBeLessThan(1e-4);
  expect(out.hiddenStates.length).toBe(5);
  out.hiddenStates.forEach((h, i) => {
    expect(maxAbsDiff(h, refHidden.subarray(i * B * T * H, (i + 1) * B * T * H))).toBeLessThan(1e-4);
  });
}

describe('teacher on the logits-only export, hidden states by graph surgery', () => {
  let teacher: Teacher;
  beforeAll(async () => {
    teacher = await Teacher.load(TINY, { threads: 2 });
  });
  afterAll(async () => {
    await teacher.release();
  });

  it('used model.onnx with surgery', () => {
    expect(teacher.onnxPath.endsWith('model.onnx')).toBe(true);
    expect(teacher.surgery).toBe(true);
    expect(teacher.hiddenStateIndices).toEqual([0, 1, 2, 3, 4]);
  });

  it('logits and all 5 hidden states equal the reference within 1e-4', async () => {
    checkAgainstReference(await teacher.forward(batch));
  });

  it('returns only the hidden states asked for', async () => {
    const last = await Teacher.load(TINY, { hiddenStates: [4] });
    const out = await last.forward(batch);
    expect(out.hiddenStates.length).toBe(1);
    expect(maxAbsDiff(out.hiddenStates[0]!, refHidden.subarray(4 * B * T * H))).toBeLessThan(1e-4);
    await last.release();
    const named = await Teacher.load(TINY, { hiddenStates: 'last' });
    expect(named.hiddenStateIndices).toEqual([4]);
    await named.release();
  });
});

describe('soft targets computed inside the teacher graph', () => {
  it(
    "selectSoftRows in place (the worker's form) " +
      'gives the rows a copy gives, in the same buffer; out of order it copies',
    () => {
      const [n, v] = [7, 5];
      const probs = Float32Array.from({ length: n * v }, (_, i) => i + 0.5);
      const logits = Float32Array.from({ length: n * v }, (_, i) => -i);
      const negEntropy = Float32Array.from({ length: n }, (_, i) => -i);
      for (const rows of [
        Int32Array.from([0, 1, 2, 3, 4, 5, 6]),
        Int32Array.from([1, 2, 5, 6]),
        Int32Array.from([0, 3]),
        Int32Array.from([6]),
      ]) {
        const copied = selectSoftRows(probs, negEntropy, rows, v, 2, logits);
        const [p, l] = [probs.slice(), logits.slice()];
        const moved = selectSoftRows(p, negEntropy, rows, v, 2, l, true);
        expect(moved.probs).toEqual(copied.probs);
        expect(moved.logits).toEqual(copied.logits);
        expect(moved.negEntropy).toEqual(copied.negEntropy);
        expect(Array.from(copied.probs.subarray(0, v))).toEqual(
          Array.from({ length: v }, (_, j) => rows[0]! * v + j + 0.5),
        );
        expect(moved.probs.buffer).toBe(p.buffer); // no new array
        expect(moved.logits!.buffer).toBe(l.buffer);
      }
      const unordered = Int32Array.from([3, 0, 5]);
      const p = probs.slice();
      const moved = selectSoftRows(p, negEntropy, unordered, v, 2, undefined, true);
      expect(moved.probs).toEqual(selectSoftRows(probs, negEntropy, unordered, v, 2).probs);
      expect(p).toEqual(probs); // left as it was: moving row 3 to the front would overwrite row 0 before it is read
    },
  );

  it('equal softmax(logits/τ) and Σ p log p computed on the host', async () => {
    const teacher = await Teacher.load(TINY, { hiddenStates: [4], softTargetTemperature: 2 });
    const out = await teacher.forward(batch);
    await teacher.release();
    const rows = Int32Array.from({ length: B * T }, (_, i) => i);
    const host = teacherSoftTargets(out.logits, rows, 6144, 2, false); // from the same logits
    const graph = selectSoftRows(out.soft!.probs, out.soft!.negEntropy!, rows, 6144, 2);
    expect(maxAbsDiff(graph.probs, host.probs)).toBeLessThan(1e-5); // onnxruntime's vectorised exp: float32 rounding
    expect(maxAbsDiff(graph.negEntropy, host.negEntropy)).toBeLessThan(1e-4);
    expect(host.negEntropy.every((v) => v <= 0)).toBe(true);
  });

  it(
    'with soft_targets_topk: the graph gives the k largest ' + 'soft targets and their ids, for the rows asked',
    async () => {
      const k = 8;
      const teacher = await Teacher.load(TINY, { hiddenStates: [4], softTargetTemperature: 2, softTargetTopK: k });
      const out = await teacher.forward(batch);
      await teacher.release();
      expect(out.soft!.probs.length).toBe(B * T * k); // [B, T, k], not [B, T, V]
      expect(out.soft!.negEntropy).toBeUndefined();
      const rows = Int32Array.from([3, 0, B * T - 1]); // any rows, in any order
      const full = teacherSoftTargets(out.logits, rows, 6144, 2, false); // softmax on the host, [3, V]
      const host = topkOfSoftTargets(full, 6144, k);
      const graph = selectTopkRows(out.soft!.probs, out.soft!.topkIds!, rows, k, 2);
      // Each id the graph kept has the probability it reports, and is among the top k up to float32 rounding
      // (1e-5: onnxruntime's and the host's exp differ by rounding; two near-equal values may swap places).
      for (let r = 0; r < rows.length; r++) {
        const kth = host.probs[r * k + k - 1]!;
        for (let j = 0; j < k; j++) {
          const id = graph.topkIds![r * k + j]!;
          expect(Math.abs(full.probs[r * 6144 + id]! - graph.probs[r * k + j]!)).toBeLessThan(1e-5);
          expect(graph.probs[r * k + j]!).toBeGreaterThan(kth - 1e-5);
          // sorted, largest first
          if (j > 0) expect(graph.probs[r * k + j]!).toBeLessThanOrEqual(graph.probs[r * k + j - 1]!);
        }
        expect(new Set(graph.topkIds!.subarray(r * k, r * k + k)).size).toBe(k);
      }
      expect(maxAbsDiff(graph.negEntropy, host.negEntropy)).toBeLessThan(1e-5);
      // Merging the tail into one bucket lowers the entropy: Σ p̃ log p̃ ≥ Σ p log p, and both are ≤ 0.
      expect(graph.negEntropy.every((v, r) => v <= 0 && v >= full.negEntropy[r]! - 1e-6)).toBe(true);
      await expect(Teacher.load(TINY, { softTargetTemperature: 2, softTargetTopK: 6144 })).rejects.toThrow(
        /soft_targets_topk 6144 must be a whole number from 1 to 6143/,
      );
    },
  );
});

describe('teacher on model-hidden.onnx (an export with every hidden state: test/fixtures/tiny-bert-cased)', () => {
  it('uses the exported hidden states and matches the reference', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'distill-hidden-'));
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'vocab.txt'])
      copyFileSync(join(TINY, f), join(dir, f));
    copyFileSync(join(GOLDEN, 'model-hidden.onnx'), join(dir, 'model-hidden.onnx'));
    const teacher = await Teacher.load(dir);
    expect(teacher.surgery).toBe(false);
    checkAgainstReference(await teacher.forward(batch));
    await teacher.release();
    rmSync(dir, { recursive: true });
  });
});

describe('model folder validation', () => {
  function copyTiny(): string {
    const dir = mkdtempSync(join(tmpdir(), 'distill-bad-'));
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'vocab.txt', 'model.onnx'])
      copyFileSync(join(TINY, f), join(dir, f));
    return dir;
  }

  it('names config.json and both sizes when vocab_size disagrees with the tokenizer', async () => {
    const dir = copyTiny();
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { vocab_size: number };
    cfg.vocab_size = 6000;
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    const err = await Teacher.load(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MismatchError);
    expect((err as Error).message).toMatch(/config\.json says vocab_size 6000/);
    expect((err as Error).message).toMatch(/6144 tokens/);
  });

  it('names the ONNX file when its logits disagree with config and tokenizer', async () => {
    const dir = copyTiny();
    // Drop the last 44 tokens from the tokenizer and config: the ONNX graph still gives 6144 logits.
    const tj = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as {
      model: { vocab: Record<string, number> };
    };
    for (const [t, id] of Object.entries(tj.model.vocab)) if (id >= 6100) delete tj.model.vocab[t];
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tj));
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { vocab_size: number };
    cfg.vocab_size = 6100;
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    const err = await Teacher.load(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MismatchError);
    expect((err as Error).message).toContain('model.onnx');
    expect((err as Error).message).toMatch(/6144 logits per token.*vocab_size 6100/);
  });

  it('reports a missing ONNX file, a missing config and a broken ONNX file by name', async () => {
    const noOnnx = copyTiny();
    rmSync(join(noOnnx, 'model.onnx'));
    await expect(Teacher.load(noOnnx)).rejects.toThrow(/model\.onnx: missing/);
    const noConfig = copyTiny();
    rmSync(join(noConfig, 'config.json'));
    await expect(Teacher.load(noConfig)).rejects.toThrow(/config\.json: missing/);
    const broken = copyTiny();
    writeFileSync(join(broken, 'model.onnx'), readFileSync(join(TINY, 'model.onnx')).subarray(0, 100_000));
    const err = await Teacher.load(broken).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FileFormatError);
    expect((err as Error).message).toContain('model.onnx');
    await expect(Teacher.load(join(noOnnx, 'nope'), { optionName: '--model' })).rejects.toThrow(
      /no such folder \(given as --model\)/,
    );
  });
});

describe('the teacher on a GPU provider is checked to run there', () => {
  it('fails loudly when onnxruntime placed every node on the CPU (a silent fall-back)', () => {
    const error = placementError({ CPUExecutionProvider: 189 }, 'webgpu', '--teacher');
    expect(error?.message).toBe(
      "--teacher: the webgpu execution provider was asked for, but onnxruntime ran none of the teacher's nodes on it " +
        '(189 on CPUExecutionProvider)',
    );
    expect(error?.hint).toMatch(/--teacher-ep cpu/);
    expect(
      placementError({ CPUExecutionProvider: 54, WebGpuExecutionProvider: 144 }, 'webgpu', '--teacher'),
    ).toBeUndefined();
    expect(placementError({ CPUExecutionProvider: 189 }, 'cuda', 'teacher')?.message).toMatch(
      /cuda execution provider was asked for/,
    );
  });
});

describe('top-k soft targets in two stages (the form the WebGPU provider gets)', () => {
  const topkCount = (model: Uint8Array): number =>
    onnx.ModelProto.decode(model).graph!.node!.filter((n) => n.opType === 'TopK').length;

  it(
    'gives exactly the one-stage TopK, ties to the lower id included, ' + 'also when the last group is shorter than k',
    async () => {
      // V 6144 in groups of 1000: padded to 7000, the last group holds 144 real values, so with k = 200 padding
      // enters that group's candidates (and must never win the second stage).
      const [n, v] = [48, 6144];
      const logits = new ort.Tensor('float32', tiedLogits(n, v, 7), [1, n, v]);
      for (const k of [8, 200]) {
        const run = async (group: number): Promise<{ probs: Float32Array; ids: BigInt64Array }> => {
          const model = softTargetModel(n, v, k, group);
          expect(topkCount(model)).toBe(group === Infinity ? 1 : 2);
          const session = await ort.InferenceSession.create(model, {
            executionProviders: ['cpu'],
            intraOpNumThreads: 1,
          });
          const out = await session.run({ logits });
          await session.release();
          return {
            probs: out['distill_soft_targets']!.data as Float32Array,
            ids: out['distill_soft_topk_ids']!.data as BigInt64Array,
          };
        };
        const one = await run(Infinity);
        const two = await run(1000);
        expect(two.probs).toEqual(one.probs);
        expect(two.ids).toEqual(one.ids);
        // The case is the one meant: ties inside the top k, ids from every group, none from the padding.
        let ties = 0;
        for (let r = 0; r < n; r++)
          for (let j = 1; j < k; j++) if (one.probs[r * k + j] === one.probs[r * k + j - 1]) ties++;
        expect(ties).toBeGreaterThan(n);
        const groups = new Set(Array.from(two.ids, (id) => Math.floor(Number(id) / 1000)));
        expect([...groups].sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
        expect(Array.from(two.ids).every((id) => id < BigInt(v))).toBe(true);
      }
    },
  );

  it(
    'full soft targets, both forms of log p: Σ p log p finite and ' +
      'within float32 rounding where exp(t/τ) underflows to p = 0',
    async () => {
      const [n, v] = [4, 6144];
      const x = underflowingLogits(n, v, 3);
      const host = teacherSoftTargets(
        x,
        Int32Array.from({ length: n }, (_, i) => i),
        v,
        2,
        false,
      ); // float64 sums
      for (const webgpu of [false, true]) {
        // LogSoftmax; Log(max(p, 2^-126)), the WebGPU provider's form
        const session = await ort.InferenceSession.create(softTargetModel(n, v, 0, Infinity, 17, webgpu), {
          executionProviders: ['cpu'],
          intraOpNumThreads: 1,
        });
        const out = await session.run({ logits: new ort.Tensor('float32', x, [1, n, v]) });
        await session.release();
        const graph = out['distill_soft_neg_entropy']!.data as Float32Array;
        expect(
          Array.from((out['distill_soft_targets']!.data as Float32Array).subarray(0, v)).filter((p) => p === 0).length,
        ).toBeGreaterThan(v / 4);
        for (let r = 0; r < n; r++) {
          expect(Number.isFinite(graph[r]!)).toBe(true);
          expect(Math.abs(graph[r]! - host.negEntropy[r]!)).toBeLessThanOrEqual(negEntropyBound(host.probs, r * v, v));
        }
      }
    },
  );

  it(
    'stays one stage where two cannot help or cannot be written: ' +
      'V within a group, k above the group, opset below 11',
    () => {
      expect(topkCount(softTargetModel(4, 6144, 8, 1000))).toBe(2);
      expect(topkCount(softTargetModel(4, 6144, 8, 8192))).toBe(1);
      expect(topkCount(softTargetModel(4, 6144, 1001, 1000))).toBe(1);
      expect(topkCount(softTargetModel(4, 6144, 8, 1000, 10))).toBe(1);
    },
  );
});
