// The multi-update reference (test/fixtures/updates/, made by make_update_references.py with the plain-PyTorch
// peer and torch.optim.AdamW): the project's own update step (src/train/step.ts, what `distill train` runs:
// the teacher worker's soft targets, distillObjective, gradient accumulation, clipping, AdamW, the schedule)
// replayed over the same pre-masked micro-batches from the same initial student, on the backend the calling
// test file chose (one path per file: backends, BLAS and SIMD are chosen once per process).
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finetuneStudent } from '../src/probe/finetune.js';
import { majorityBaseline } from '../src/probe/metrics.js';
import { loadTask, writeProbeData, type Example } from '../src/probe/tasks.js';
import { copyTokenizerFiles, saveStudent } from '../student/io.js';
import { SafetensorsFile } from '../src/core/safetensors.js';
import { readEncoderConfig } from '../src/core/model-dir.js';
import { UpdateStep, distillObjective } from '../src/train/step.js';
import { AdamW, linearWarmupDecay } from '../src/train/adamw.js';
import { LossScale } from '../src/train/loss-scale.js';
import { RemoteTeacher } from '../teacher/remote.js';
import { defaultTeacherEp } from '../teacher/teacher.js';
import { WordPieceTokenizer } from '../corpus/tokenizer.js';
import { prefetch, selectBackend, type BackendChoice } from '../student/backend.js';
import type { BackendName, Precision } from '../student/backend-names.js';
import { initStudentFromTeacher } from '../student/init.js';
import { lossRows } from '../losses/rows.js';
import { RECIPE_LOSS_WEIGHTS } from '../losses/total.js';
import { addLosses, lossesFromPacked, zeroLosses } from '../losses/record.js';
import { REPO, TINY, canRun, expectWeightsAgree, relDiff, weightDifference } from './helpers.js';
import tinyReference from './fixtures/updates/tiny.json' with { type: 'json' };
import unseenReference from './fixtures/updates/unseen.json' with { type: 'json' };
import unseenTopkReference from './fixtures/updates/unseen-topk8.json' with { type: 'json' };
import tinyNarrowReference from './fixtures/updates/tiny-narrow.json' with { type: 'json' };
import unseenRelationsReference from './fixtures/updates/unseen-relations.json' with { type: 'json' };
import tinyHalfReference from './fixtures/updates/tiny-f16.json' with { type: 'json' };
import tinyDropoutReference from './fixtures/updates/tiny-dropout-mse.json' with { type: 'json' };
import { DistilBertStudent } from '../student/model.js';
import { describeAdamWReference, type AdamWForm } from './adamw-reference.js';
import { studentConfigFromTeacher } from '../student/init.js';
import { intermediatePlan, teacherOutputs } from '../losses/layer-map.js';

export const UNSEEN = join(REPO, 'test', 'fixtures', 'unseen-bert-uncased');
/**
 * unseen-topk8: the unseen teacher's run with the KL on its top-8 soft targets (soft_targets_topk: 8).
 * tiny-narrow, unseen-relations: students of another shape (random weights, half the teacher's width, a learned
 * projection) with the intermediate-layer losses (alpha_hidden, alpha_attention, alpha_value_relation all 1):
 * attention per head (tiny: 4 heads each) and over relation heads (unseen: 6 teacher heads, 4 student heads).
 * tiny-f16: the tiny run with precision "fp16-mixed" (every student product with f16 operands, loss_scale 1024).
 * tiny-dropout-mse: the tiny run with the student's dropout 0.1 (PyTorch applies the project's documented masks at
 * transformers' DistilBERT sites, micro-batch i from dropout seed i) and the logit MSE (alpha_mse 1e-3, full soft
 * targets): a dropout at another site or scaled by rate instead of 1/(1−rate), or a wrong MSE, fails it.
 */
export type ReferenceName =
  'tiny' | 'unseen' | 'unseen-topk8' | 'tiny-narrow' | 'unseen-relations' | 'tiny-f16' | 'tiny-dropout-mse';
interface Reference extends Omit<typeof tinyReference, 'student_layers_from_teacher' | 'records'> {
  student_layers_from_teacher: number[] | null;
  records: ((typeof tinyReference.records)[number] & {
    loss_hidden?: number;
    loss_att?: number;
    loss_vr?: number;
    loss_mse?: number;
  })[];
  student_shape?: { layers: number; hidden: number; heads: number; intermediate: number };
  layer_map?: number[];
  relation_heads?: number | null;
  alpha_hidden?: number;
  alpha_attention?: number;
  alpha_value_relation?: number;
  precision?: string;
  loss_scale?: number;
  dropout?: number;
  alpha_mse?: number;
}
const REFERENCES: Record<ReferenceName, { json: Reference; teacher: string }> = {
  tiny: { json: tinyReference, teacher: TINY },
  unseen: { json: unseenReference as Reference, teacher: UNSEEN },
  'unseen-topk8': { json: unseenTopkReference as Reference, teacher: UNSEEN },
  'tiny-narrow': { json: tinyNarrowReference as Reference, teacher: TINY },
  'unseen-relations': { json: unseenRelationsReference as Reference, teacher: UNSEEN },
  'tiny-f16': { json: tinyHalfReference as Reference, teacher: TINY },
  'tiny-dropout-mse': { json: tinyDropoutReference as Reference, teacher: TINY },
};
/** The references with students of another shape and the intermediate-layer losses. */
export const INTERMEDIATE_REFERENCES: ReferenceName[] = ['tiny-narrow', 'unseen-relations'];

export interface UpdateRecord {
  loss: number;
  loss_ce: number;
  loss_mlm: number;
  loss_cos: number;
  loss_mse: number;
  loss_hidden: number;
  loss_att: number;
  loss_vr: number;
  grad_norm: number;
  lr: number;
}

export interface Replay {
  backend: BackendChoice;
  records: UpdateRecord[];
  /** Final weights in transformers' layout, by name. */
  weights: Map<string, Float32Array>;
}

/**
 * Replay the reference's updates through the project's update step (`weightDecay`:
 * another decay, to show a wrong step is seen).
 */
export async function replay(name: ReferenceName, backend: BackendChoice, weightDecay?: number): Promise<Replay> {
  const { json: ref, teacher: teacherDir } = REFERENCES[name];
  const file = SafetensorsFile.read(join(REPO, 'test', 'fixtures', 'updates', `${name}.safetensors`));
  const teacherConfig = readEncoderConfig(teacherDir);
  const tok = WordPieceTokenizer.fromDir(teacherDir);
  const shape = ref.student_shape;
  // A student of another shape starts from the reference's own random weights (its projection included).
  const student = shape
    ? DistilBertStudent.fromHfWeights(
        {
          ...studentConfigFromTeacher(teacherConfig, [], tok.padId),
          dim: shape.hidden,
          n_layers: shape.layers,
          n_heads: shape.heads,
          hidden_dim: shape.intermediate,
          projection_dim: teacherConfig.hiddenSize,
        },
        (name) => file.getFloat32(`initial.${name}`),
      )
    : initStudentFromTeacher(teacherDir, teacherConfig, ref.student_layers_from_teacher!, tok.padId);
  student.config.dropout = ref.dropout ?? 0; // the references run without dropout but tiny-dropout-mse
  student.config.attention_dropout = ref.dropout ?? 0;
  const optimizer = new AdamW(
    student.variables(),
    student.specs.map((s) => !s.noDecay),
    { betas: ref.betas as [number, number], eps: ref.eps, weightDecay: weightDecay ?? ref.weight_decay },
  );
  const update = new UpdateStep(student.variables(), optimizer, {
    gradAccum: ref.grad_accum,
    maxGradNorm: ref.max_grad_norm,
    ...(ref.precision === 'fp16-mixed' ? { lossScale: new LossScale(ref.loss_scale!, 0) } : {}),
  });
  const weights = {
    ...RECIPE_LOSS_WEIGHTS,
    temperature: ref.temperature,
    alpha_ce: ref.alpha_ce,
    alpha_mlm: ref.alpha_mlm,
    alpha_cos: ref.alpha_cos,
    alpha_mse: ref.alpha_mse ?? 0,
    alpha_hidden: ref.alpha_hidden ?? 0,
    alpha_attention: ref.alpha_attention ?? 0,
    alpha_value_relation: ref.alpha_value_relation ?? 0,
  };
  const plan = intermediatePlan(
    { layers: student.config.n_layers, hidden: student.config.dim, heads: student.config.n_heads },
    { layers: teacherConfig.numLayers, hidden: teacherConfig.hiddenSize, heads: teacherConfig.numHeads },
    { ...weights, layer_map: null, relation_heads: ref.relation_heads ?? null },
  );
  if (plan) expect(plan.layerMap).toEqual(ref.layer_map); // the uniform map is the reference's
  const teacher = await RemoteTeacher.start(
    teacherDir,
    {
      ...teacherOutputs(plan, teacherConfig.numLayers),
      threads: 1,
      optionName: 'teacher',
      softTargetTemperature: ref.temperature,
      softTargetTopK: ref.soft_targets_topk,
      executionProvider: defaultTeacherEp(backend.device !== undefined),
    },
    weights.alpha_mse !== 0,
  );
  const records: UpdateRecord[] = [];
  try {
    for (let u = 0; u < ref.updates; u++) {
      const lr = ref.lr * linearWarmupDecay(u, ref.warmup_updates, ref.updates);
      const sums = zeroLosses();
      for (let m = 0; m < ref.grad_accum; m++) {
        const i = u * ref.grad_accum + m;
        const [B, T] = file.shapeOf(`batch.${i}.masked_input_ids`) as [number, number];
        const inputIds = file.getInt32(`batch.${i}.masked_input_ids`);
        const attentionMask = file.getInt32(`batch.${i}.attention_mask`);
        const rows = lossRows(attentionMask, file.getInt32(`batch.${i}.mlm_labels`), B, T, teacherConfig.vocabSize);
        const t = await teacher.forward({
          inputIds,
          attentionMask,
          batchSize: B,
          seqLen: T,
          softRows: rows.realRows,
          keepLogits: weights.alpha_mse !== 0,
          fullLogits: false,
        });
        const parts = lossesFromPacked(
          await update.accumulate(
            distillObjective(
              student,
              {
                inputIds,
                attentionMask,
                batchSize: B,
                seqLen: T,
                rows,
                teacher: {
                  lastHidden: t.lastHidden,
                  soft: t.soft,
                  ...(plan ? { intermediate: { plan, tensors: t.intermediate } } : {}),
                },
              },
              weights,
              { training: true, dropoutSeed: i },
            ),
          ),
        );
        addLosses(sums, parts, ref.grad_accum);
      }
      const applied = await update.apply(lr);
      expect(applied.skipped).toBe(false); // a static scale throws instead of skipping
      records.push({
        loss: sums.total,
        loss_ce: sums.ce,
        loss_mlm: sums.mlm,
        loss_cos: sums.cos,
        loss_mse: sums.mse,
        loss_hidden: sums.hidden,
        loss_att: sums.att,
        loss_vr: sums.vr,
        grad_norm: applied.norm,
        lr,
      });
    }
    await prefetch(student.variables());
    const final = new Map([...student.hfWeights()].map(([n, w]) => [n, w.data]));
    return { backend, records, weights: final };
  } finally {
    await teacher.close();
    optimizer.dispose();
    student.dispose();
  }
}

/** A reference's per-update records and settings (test/fixtures/updates/NAME.json). */
export function referenceJson(name: ReferenceName): Reference {
  return REFERENCES[name].json;
}

/** The reference's final weights by name (transformers' layout). */
export function referenceWeights(name: ReferenceName): Map<string, Float32Array> {
  const file = SafetensorsFile.read(join(REPO, 'test', 'fixtures', 'updates', `${name}.safetensors`));
  return new Map(
    file
      .names()
      .filter((n) => n.startsWith('final.'))
      .map((n) => [n.slice('final.'.length), file.getFloat32(n)]),
  );
}

/**
 * The replay against PyTorch: per-update losses within `lossRel` relative (1e-4: the golden tests' bound for
 * one step, kept over all updates), gradient norms within 1e-3, the learning rates exactly; final weights as
 * argued at expectWeightsAgree (test/helpers.ts).
 */
export function expectMatchesReference(name: ReferenceName, run: Replay, lossRel = 1e-4): void {
  const ref = REFERENCES[name].json;
  expect(run.records.length).toBe(ref.updates);
  run.records.forEach((r, u) => {
    const want = ref.records[u]!;
    for (const k of [
      'loss',
      'loss_ce',
      'loss_mlm',
      'loss_cos',
      'loss_mse',
      'loss_hidden',
      'loss_att',
      'loss_vr',
    ] as const) {
      const w = want[k];
      if (w === undefined) continue; // the references without the intermediate-layer losses or the MSE
      expect(relDiff(r[k], w), `update ${u + 1} ${k}: ${r[k]} vs PyTorch ${w}`).toBeLessThan(lossRel);
    }
    expect(
      relDiff(r.grad_norm, want.grad_norm),
      `update ${u + 1} grad_norm: ${r.grad_norm} vs PyTorch ${want.grad_norm}`,
    ).toBeLessThan(1e-3);
    expect(r.lr).toBeCloseTo(want.lr, 12);
  });
  // Final weights: within 2·Σ lr_t everywhere (the reasons: expectWeightsAgree) and within the reference's RMS bound.
  expectWeightsAgree(
    weightDifference(run.weights, referenceWeights(name), ref.lr),
    run.records.map((r) => r.lr),
    ref.lr,
    WEIGHT_RMS_BOUND[name],
  );
}

/**
 * Each reference's bound on the root mean square of (final weights − PyTorch's), in units of the peak lr: 4× the
 * largest distance any fp32 path of this suite replayed at (every updates-*.test.ts, measured on an AMD EPYC with
 * OpenBLAS 0.3.21, MLAS, tfjs-wasm, tfjs-cpu and Mesa's lavapipe: tiny 2.22e-4 (webgpu), unseen 6.07e-5 (wasm without
 * SIMD), unseen-topk8 4.88e-5, tiny-narrow 1.00e-4, unseen-relations 3.21e-5, tiny-dropout-mse 3.16e-4 (webgpu)). The
 * margin of 4 is for other CPUs, whose product kernels sum in other orders. A wrong step lies beyond it: the replay
 * with weight decay off (the effect of decay 0.01 over 8 updates, the smallest wrong step these replays missed before)
 * measured 3.0e-3 (tiny) and 3.4e-3 (unseen): 3.3 and 13.5 times their bounds (the test: updates-wasm-ort.test.ts).
 * tiny-f16: its own f16 rounding (2.2e-2 measured) is larger than decay's effect, so it keeps 0.05; the AdamW reference
 * (test/adamw-reference.ts) checks decay on every path.
 */
export const WEIGHT_RMS_BOUND: Record<ReferenceName, number> = {
  tiny: 9e-4,
  unseen: 2.5e-4,
  'unseen-topk8': 2e-4,
  'tiny-narrow': 4e-4,
  'unseen-relations': 1.3e-4,
  'tiny-f16': 0.05,
  'tiny-dropout-mse': 1.3e-3,
};

/**
 * The tests of one path: the references (default: the tiny teacher and the unseen one) replayed on `backendName`, as
 * `distill train --backend NAME` starts it. `skip`: why this path cannot run here (printed), or undefined.
 * `check`: what must hold of the started backend (e.g. that products run on the BLAS).
 */
export function describeReplay(
  path: string,
  backendName: BackendName,
  skip: string | undefined,
  check: (b: BackendChoice) => void,
  references: ReferenceName[] = ['tiny', 'unseen'],
  precision: Precision = 'fp32',
  adamw: { forms: AdamWForm[]; setInPlace?: (on: boolean) => void } = { forms: ['variables'] },
): void {
  describe.runIf(canRun(path, skip))(`8 updates against torch.optim.AdamW: ${path}`, () => {
    let backend: BackendChoice;
    beforeAll(async () => {
      backend = await selectBackend(backendName, { precision });
      check(backend);
    });
    it('probe --mode finetune trains on this path: the loss falls and dev beats the majority class', async () => {
      const work = mkdtempSync(join(tmpdir(), 'distill-finetune-'));
      const studentDir = join(work, 'student');
      const s = initStudentFromTeacher(TINY, readEncoderConfig(TINY), [0, 3], 0);
      saveStudent(s, studentDir);
      copyTokenizerFiles(TINY, studentDir);
      s.dispose();
      writeProbeData(join(work, 'tasks'), 60);
      const task = loadTask(join(work, 'tasks', 'spam-ham'));
      // Each mail cut to its first 80 characters (at most 79 tokens here), 48 to train and 40 to score: the
      // cpu backend's non-product kernels are pure JS and cost grows with the padded length. The opening
      // words still tell spam from ham (dev accuracy 0.65 against a majority class of 0.45 on every path).
      const opening = (e: Example): Example => ({ ...e, texts: [e.texts.join(' ').slice(0, 80)] });
      task.train = task.train.slice(0, 48).map(opening);
      task.dev = task.dev.slice(0, 40).map(opening);
      const before = tf.memory().numTensors;
      const { metrics, losses } = await finetuneStudent(studentDir, task, {
        epochs: 3,
        lr: 1e-3,
        batchSize: 8,
        pooling: 'mean',
        seed: 17,
        backend: backendName,
      }).finally(() => rmSync(work, { recursive: true, force: true }));
      console.log(
        JSON.stringify({
          path,
          train: task.train.length,
          dev: task.dev.length,
          finetune_losses: losses,
          accuracy: metrics.accuracy,
        }),
      );
      const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
      // Stale weights leave the model as it was: the last epoch's loss would not fall below the first's.
      expect(mean(losses.slice(-6))).toBeLessThan(0.8 * mean(losses.slice(0, 6)));
      expect(metrics.accuracy!).toBeGreaterThan(majorityBaseline(task).accuracy! + 0.05);
      expect(tf.memory().numTensors).toBe(before);
    }, 600_000); // tfjs's pure-JS cpu backend without a BLAS takes minutes here; the other paths seconds

    if (adamw.forms.length > 0) describeAdamWReference(path, adamw.forms, adamw.setInPlace);

    for (const name of references) {
      it(
        `${name} teacher: per-update losses, gradient norms, ` +
          `lr and final weights match PyTorch; no tensor left behind`,
        async () => {
          const before = tf.memory().numTensors;
          const run = await replay(name, backend);
          const d = weightDifference(run.weights, referenceWeights(name), REFERENCES[name].json.lr);
          console.log(
            JSON.stringify({ path, name, matmul: backend.matmul, ...d, losses: run.records.map((r) => r.loss) }),
          );
          expectMatchesReference(name, run);
          expect(tf.memory().numTensors).toBe(before);
        },
      );
    }
  });
}
