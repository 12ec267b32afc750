// What `distill export` writes, loaded by the real client: transformers.js (@huggingface/transformers, on the
// onnxruntime-node distill already has), local files only, the folder as written. For (a) the export of a
// quick-start run's checkpoint, (b) the export of a student whose teacher's tokenizer.json has no post-processor,
// (c) a narrow student: transformers.js's fill-mask ranks the same top-5 tokens as `distill fill-mask` on the same
// folder, scores within 1e-4, and its feature extraction gives distill's last hidden states within 1e-4. Both run
// the same graph in the same onnxruntime, so they differ only if the package around the numbers (layout,
// tokenizer, outputs) is wrong: a missing [CLS]/[SEP] moves every score far more than 1e-4.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { env, pipeline, type FeatureExtractionPipeline, type FillMaskPipeline } from '@huggingface/transformers';
import { Teacher } from '../teacher/teacher.js';
import { fillMask } from '../teacher/fill-mask.js';
import { publicDomainParagraphs } from '../corpus/public-domain.js';
import { runCli } from './cli-helpers.js';
import { GOLDEN, REPO, TINY } from './helpers.js';
import { SafetensorsFile } from '../src/core/safetensors.js';

env.allowRemoteModels = false;

const work = mkdtempSync(join(tmpdir(), 'distill-tjs-'));
const PROMPTS = [
  'The President of the United [MASK] delivered the address.',
  'Call me [MASK].',
  'The whale swam into the [MASK] of the sea.',
];

/** Run the CLI, failing with its stderr. */
function cli(args: string[]): string {
  const r = runCli(args);
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

/** transformers.js's pipeline on a folder, local files only. */
async function load<T extends 'fill-mask' | 'feature-extraction'>(
  task: T,
  dir: string,
  dtype: 'fp32' | 'q8' = 'fp32',
): Promise<T extends 'fill-mask' ? FillMaskPipeline : FeatureExtractionPipeline> {
  env.localModelPath = dirname(dir) + '/';
  return (await pipeline(task, basename(dir), { local_files_only: true, dtype })) as never;
}

/** transformers.js and distill on the same exported folder: fill-mask top-5 and the last hidden states. */
async function expectSameAsDistill(dir: string): Promise<void> {
  const teacher = await Teacher.load(dir, { hiddenStates: 'last', optionName: '--model' });
  try {
    const ours = await fillMask(
      teacher,
      PROMPTS.map((text) => ({ text, origin: 'test' })),
      5,
    );
    const unmasker = await load('fill-mask', dir);
    for (const [i, text] of PROMPTS.entries()) {
      const theirs = (await unmasker(text, { top_k: 5 })) as { token: number; score: number }[];
      expect(
        theirs.map((t) => t.token),
        text,
      ).toEqual(ours[i]![0]!.map((p) => p.token_id));
      theirs.forEach((t, k) => expect(Math.abs(t.score - ours[i]![0]![k]!.score)).toBeLessThan(1e-4));
    }
    await unmasker.dispose();

    const extractor = await load('feature-extraction', dir);
    const text = 'Call me Ishmael.';
    const features = await extractor(text); // [1, T, H]
    const ids = teacher.tokenizer.encode(text);
    const ours2 = await teacher.forward({
      inputIds: Int32Array.from(ids),
      attentionMask: new Int32Array(ids.length).fill(1),
      batchSize: 1,
      seqLen: ids.length,
    });
    expect(features.dims).toEqual([1, ids.length, teacher.config.hiddenSize]);
    const want = ours2.hiddenStates[0]!;
    let worst = 0;
    (features.data as Float32Array).forEach((v, j) => (worst = Math.max(worst, Math.abs(v - want[j]!))));
    expect(worst).toBeLessThan(1e-4);
    await extractor.dispose();
  } finally {
    await teacher.release();
  }
}

describe('transformers.js loads what distill export writes, as written', () => {
  let trained: string;
  beforeAll(() => {
    // (a) the quick start's student, trained two updates (with a validation: the card reports it).
    const corpusText = join(work, 'moby.txt');
    const paragraphs = publicDomainParagraphs('moby-dick');
    writeFileSync(corpusText, paragraphs.slice(0, 300).join('\n') + '\n');
    const validText = join(work, 'valid.txt');
    writeFileSync(validText, paragraphs.slice(300, 340).join('\n') + '\n');
    const valid = join(work, 'valid-corpus');
    cli(['prepare', '--tokenizer', TINY, '--out', valid, '--max-length', '48', validText]);
    const run = join(work, 'run');
    const set = {
      corpus: join(work, 'corpus'),
      corpus_inputs: [corpusText],
      valid_corpus: valid,
      valid_fraction: 0,
      max_length: 48,
      batch_size: 4,
      max_steps: 2,
      eval_every: 2,
      eval_sequences: 8,
      backend: 'wasm',
      teacher_threads: 1,
    };
    const sets = Object.entries(set).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
    cli(['train', '--config', join(REPO, 'configs', 'tiny.json'), '--out', run, '--set', ...sets]);
    trained = join(work, 'export-trained');
    cli(['export', '--student', join(run, 'checkpoints', 'best'), '--out', trained, '--quantize', 'int8']);
  }, 300_000);
  afterAll(() => {
    env.localModelPath = '/models/';
  });

  it('(a) the quick start: fill-mask and feature extraction as distill, from onnx/model.onnx', async () => {
    await expectSameAsDistill(trained);
    const card = readFileSync(join(trained, 'README.md'), 'utf8');
    expect(card).toMatch(/^---\nlicense: \S+\nbase_model: ".*tiny-bert-cased"\npipeline_tag: fill-mask\n/);
    expect(card).toMatch(/The run's last evaluation \(update 2, \d+ held-out sequences\): val_loss \d+\.\d{4}/);
    // For Python's from_pretrained: DistilBertForMaskedLM's state dict, by name and shape (the tied
    // vocab_projector.weight left out, as save_pretrained leaves it), as PyTorch's reference student names it.
    const ours = SafetensorsFile.read(join(trained, 'model.safetensors'));
    const torch = SafetensorsFile.read(join(GOLDEN, 'gradients.safetensors'));
    expect(ours.names().sort()).toEqual(torch.names().sort());
    for (const n of torch.names()) expect(ours.shapeOf(n), n).toEqual(torch.shapeOf(n));
    const config = JSON.parse(readFileSync(join(trained, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({ architectures: ['DistilBertForMaskedLM'], model_type: 'distilbert', n_layers: 2 });
  }, 120_000);

  it("(a) the int8 model loads with dtype 'q8' and ranks the confident prompt's top token as fp32 does", async () => {
    const fp32 = await load('fill-mask', trained);
    const q8 = await load('fill-mask', trained, 'q8');
    // int8 products move the logits by up to ~0.3 (measured on the tiny student: 0.33 at worst over 128 random
    // positions), so a top-1 whose logit leads the second's by more than 1 (p1/p2 > e) cannot be overturned; one
    // closer can. Every prompt with such a lead keeps its top-1; the premise: the prompts have one.
    let clear = 0;
    for (const prompt of PROMPTS) {
      const a = (await fp32(prompt, { top_k: 2 })) as { token: number; score: number }[];
      const b = (await q8(prompt, { top_k: 2 })) as { token: number; score: number }[];
      expect(b[0]!.score).not.toBe(a[0]!.score); // another graph ran, not model.onnx again
      if (Math.log(a[0]!.score / a[1]!.score) <= 1) continue;
      clear++;
      expect(b[0]!.token, prompt).toBe(a[0]!.token);
    }
    expect(clear).toBeGreaterThan(0);
    await fp32.dispose();
    await q8.dispose();
  }, 120_000);

  it("(b) a teacher's tokenizer.json without a post-processor: the export writes BERT's, and agrees", async () => {
    const teacher = join(work, 'teacher-no-post');
    cpSync(TINY, teacher, { recursive: true });
    const tj = JSON.parse(readFileSync(join(teacher, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(teacher, 'tokenizer.json'), JSON.stringify({ ...tj, post_processor: null }));
    const student = join(work, 'student-no-post');
    cli(['init-student', '--teacher', teacher, '--out', student, '--no-onnx']);
    const out = join(work, 'export-no-post');
    const summary = JSON.parse(cli(['export', '--student', student, '--out', out])) as Record<string, unknown>;
    expect(summary['tokenizer_post_processor_added']).toBe(true);
    const written = JSON.parse(readFileSync(join(out, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    expect(written['post_processor']).toMatchObject({ type: 'TemplateProcessing' });
    await expectSameAsDistill(out);
  }, 120_000);

  it('(c) a narrow student (another shape, random weights): the same', async () => {
    const student = join(work, 'student-narrow');
    cli(['init-student', '--teacher', TINY, '--out', student, '--shape', '2,96,4,384', '--no-onnx']);
    const out = join(work, 'export-narrow');
    cli(['export', '--student', student, '--out', out]);
    await expectSameAsDistill(out);
  }, 120_000);
});
