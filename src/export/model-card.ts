// The model card an export carries (OUT/README.md, the Hugging Face Hub's format: YAML front matter, then
// markdown). Only measured numbers: each section appears when what it reports was measured (the run's own
// validation when the student is a checkpoint; `distill eval`, `distill probe` and `distill bench --inference`
// reports when given), and nothing is estimated.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { FileFormatError, InputError } from '../core/errors.js';
import { readJsonObject } from '../core/model-dir.js';
import { markdownTable, MADE_BY, type ProbeReport } from '../probe/report.js';
import type { EvalReport } from '../eval/run.js';
import type { TrainerState } from '../train/checkpoint.js';
import { INFERENCE_KIND, inferenceTable, type InferenceResult } from '../bench/inference-result.js';

export interface CardInputs {
  /** The teacher (parameters against it, base_model); default: the teacher of the checkpoint's run. */
  teacher?: string;
  /** `distill probe --out` report: the probes' retention. */
  probeReport?: string;
  /** `distill bench --inference` JSON lines: inference speed. */
  benchReport?: string;
  /** `distill eval` reports (JSON), e.g. the student's and the teacher's on the same sequences. */
  evalReports?: string[];
  /** The card's license; default: the teacher card's, else "other". */
  license?: string;
}

/** What the card reports, read (and checked) before the export writes anything. */
export interface CardFacts {
  teacherDir?: string;
  teacherName?: string;
  license: string;
  /** The checkpoint's training state (absent for init-student's output). */
  state?: TrainerState;
  /** The run's last validation line at or before the checkpoint's update. */
  validation?: Record<string, number>;
  probe?: ProbeReport;
  inference: InferenceResult[];
  evals: EvalReport[];
}

export function cardFacts(o: CardInputs & { student: string }): CardFacts {
  const statePath = join(o.student, 'trainer_state.json');
  const state = existsSync(statePath) ? (readJsonObject(statePath) as unknown as TrainerState) : undefined;
  const runTeacher = typeof state?.config?.teacher === 'string' ? state.config.teacher : undefined;
  const teacherDir = o.teacher ?? (runTeacher && existsSync(join(runTeacher, 'config.json')) ? runTeacher : undefined);
  const teacherConfig = teacherDir ? readJsonObject(join(teacherDir, 'config.json')) : undefined;
  const named = teacherConfig?.['_name_or_path'];
  return {
    teacherDir,
    teacherName: typeof named === 'string' && named !== '' ? named : teacherDir,
    license: o.license ?? (teacherDir ? cardLicense(join(teacherDir, 'README.md')) : undefined) ?? 'other',
    state,
    validation: state ? lastValidation(o.student, state) : undefined,
    probe: o.probeReport ? readProbeReport(o.probeReport) : undefined,
    inference: o.benchReport ? readInference(o.benchReport) : [],
    evals: (o.evalReports ?? []).map(readEvalReport),
  };
}

/** The `license:` of a model card's front matter. */
function cardLicense(path: string): string | undefined {
  if (!existsSync(path)) return undefined;
  const front = /^---\n([\s\S]*?)\n---/.exec(readFileSync(path, 'utf8'));
  return front ? /^license:\s*(\S+)/m.exec(front[1]!)?.[1] : undefined;
}

/** RUN/checkpoints/NAME → RUN/metrics.jsonl's last val_* line among the lines the checkpoint's updates wrote. */
function lastValidation(student: string, state: TrainerState): Record<string, number> | undefined {
  const checkpoints = dirname(resolve(student));
  if (basename(checkpoints) !== 'checkpoints') return undefined;
  const metrics = join(dirname(checkpoints), 'metrics.jsonl');
  if (!existsSync(metrics)) return undefined;
  const lines = readFileSync(metrics, 'utf8').split('\n').slice(0, state.metrics_lines);
  for (const line of lines.reverse()) {
    try {
      const v = JSON.parse(line) as Record<string, number>;
      if (typeof v['val_loss'] === 'number') return v;
    } catch {
      // a line cut short by a crash: the lines before it still count
    }
  }
  return undefined;
}

function readJsonFile(path: string, option: string): unknown {
  if (!existsSync(path) || !statSync(path).isFile())
    throw new InputError(`${option} ${path}: no such file`, `give the file that distill wrote`);
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as unknown;
  } catch (e) {
    throw new FileFormatError(path, `not JSON: ${(e as Error).message}`, `give the file that distill wrote`);
  }
}

function readProbeReport(path: string): ProbeReport {
  const r = readJsonFile(path, '--probe-report') as Partial<ProbeReport> | null;
  if (r?.made_by !== MADE_BY || !Array.isArray(r.tasks) || !r.macro)
    throw new FileFormatError(
      path,
      `not a report of distill probe (its "made_by" is not "${MADE_BY}")`,
      'give the file `distill probe --out` wrote',
    );
  return r as ProbeReport;
}

function readEvalReport(path: string): EvalReport {
  const r = readJsonFile(path, '--eval-report') as Partial<EvalReport> | null;
  if (typeof r?.val_loss !== 'number' || typeof r.model !== 'string')
    throw new FileFormatError(
      path,
      'not a report of distill eval (no "val_loss" and "model")',
      'save the JSON `distill eval` prints',
    );
  return r as EvalReport;
}

function readInference(path: string): InferenceResult[] {
  if (!existsSync(path)) throw new InputError(`--bench-report ${path}: no such file`);
  const rows = readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l, i) => {
      try {
        return JSON.parse(l) as Partial<InferenceResult>;
      } catch {
        throw new FileFormatError(
          path,
          `line ${i + 1} is not JSON`,
          'save the JSON lines `distill bench --inference` prints',
        );
      }
    });
  const ok = rows.filter((r): r is InferenceResult => r.kind === INFERENCE_KIND);
  if (ok.length === 0)
    throw new FileFormatError(
      path,
      `no line of kind "${INFERENCE_KIND}"`,
      'save the JSON lines `distill bench --inference` prints',
    );
  return ok;
}

export interface CardSizes {
  name: string;
  parameters: number;
  teacherParameters?: number;
  onnxBytes: number;
  quantizedBytes?: number;
}

const mb = (b: number): string => `${(b / 1e6).toFixed(1)} MB`;
const millions = (n: number): string => `${(n / 1e6).toFixed(2)} M`;

/** The card's text. */
export function modelCard(f: CardFacts, s: CardSizes): string {
  const front = [
    '---',
    `license: ${f.license}`,
    ...(f.teacherName ? [`base_model: ${JSON.stringify(f.teacherName)}`] : []),
    'pipeline_tag: fill-mask',
    'tags:',
    '  - distillation',
    'library_name: transformers.js',
    '---',
  ];
  const name = basename(resolve(s.name));
  const parts = [
    front.join('\n'),
    `# ${name}`,
    `A DistilBERT-style student${f.teacherName ? ` distilled from \`${f.teacherName}\`` : ''} with distill ` +
      "(knowledge distillation: a temperature-softened KL on the teacher's logits, masked-LM and a cosine loss on " +
      'hidden states).',
    sizeSection(f, s),
    validationSection(f),
    probeSection(f),
    inferenceSection(f),
    trainingSection(f),
    usageSection(name, s.quantizedBytes !== undefined),
  ];
  return parts.filter((p) => p !== '').join('\n\n') + '\n';
}

function sizeSection(f: CardFacts, s: CardSizes): string {
  const rows = ['| model | parameters | ONNX file |', '|---|---|---|'];
  if (s.teacherParameters !== undefined) rows.push(`| teacher | ${millions(s.teacherParameters)} | |`);
  const share =
    s.teacherParameters !== undefined
      ? ` (${((100 * s.parameters) / s.teacherParameters).toFixed(1)}% of the teacher's)`
      : '';
  rows.push(`| student | ${millions(s.parameters)}${share} | ${mb(s.onnxBytes)} (onnx/model.onnx) |`);
  if (s.quantizedBytes !== undefined)
    rows.push(`| student, int8 | ${millions(s.parameters)} | ${mb(s.quantizedBytes)} (onnx/model_quantized.onnx) |`);
  return ['## Size', rows.join('\n')].join('\n\n');
}

function validationSection(f: CardFacts): string {
  const out: string[] = [];
  const v = f.validation;
  if (v) {
    const keys = ['val_loss', 'val_ppl', 'val_acc', 'val_agree', 'val_kl', 'val_cos'].filter(
      (k) => typeof v[k] === 'number',
    );
    out.push(
      `The run's last evaluation (update ${v['step']}, ${v['val_sequences'] ?? '?'} held-out sequences): ` +
        keys.map((k) => `${k} ${v[k]!.toFixed(4)}`).join(', ') +
        '.',
    );
  }
  if (f.evals.length > 0) {
    const rows = ['| model | val_loss | val_acc | val_agree | val_kl | sequences |', '|---|---|---|---|---|---|'];
    const n = (x: number | null): string => (x === null ? '–' : x.toFixed(4));
    for (const e of f.evals)
      rows.push(
        `| \`${e.model}\` | ${n(e.val_loss)} | ${n(e.val_acc)} | ${n(e.val_agree)} | ${n(e.val_kl)} | ` +
          `${e.val_sequences} |`,
      );
    out.push(
      '`distill eval` on the same sequences (corpus, seed and valid fraction as each report says):\n\n' +
        rows.join('\n'),
    );
  }
  return out.length ? ['## Validation', ...out].join('\n\n') : '';
}

function probeSection(f: CardFacts): string {
  if (!f.probe) return '';
  return [
    '## Probes',
    `\`distill probe\` (${f.probe.mode}, ${f.probe.pooling} pooling): the student keeps ` +
      `${f.probe.macro.retention_pct.toFixed(1)}% of the teacher's macro score.`,
    markdownTable(f.probe),
  ].join('\n\n');
}

function inferenceSection(f: CardFacts): string {
  if (f.inference.length === 0) return '';
  const r = f.inference[0]!;
  return [
    '## Inference speed',
    `onnxruntime on the CPU (\`distill bench --inference\`, ${r.threads || 'all'} threads, ${r.machine}); ` +
      `"vs first" is each model's speed against the first one's (${r.label}) at the same shape:`,
    inferenceTable(f.inference),
  ].join('\n\n');
}

function trainingSection(f: CardFacts): string {
  if (!f.state) return '';
  const s = f.state;
  return [
    '## Training',
    `${s.step} updates of ${s.total_updates}, ${s.tokens.toLocaleString('en-US')} tokens seen, ` +
      `${(s.elapsed_s / 60).toFixed(1)} minutes on ${s.world_size} process${s.world_size === 1 ? '' : 'es'}.`,
    "<details><summary>The run's configuration</summary>\n\n```json\n" +
      JSON.stringify(s.config, null, 2) +
      '\n```\n\n</details>',
  ].join('\n\n');
}

function usageSection(name: string, quantized: boolean): string {
  return [
    '## Use',
    'In JavaScript, with [transformers.js](https://huggingface.co/docs/transformers.js) (this folder as a local model):',
    '```js\n' +
      "import { env, pipeline } from '@huggingface/transformers';\n" +
      "env.localModelPath = './';\n" +
      `const unmasker = await pipeline('fill-mask', '${name}'${quantized ? ", { dtype: 'q8' }" : ''});\n` +
      "console.log(await unmasker('The capital of France is [MASK].'));\n" +
      '```',
    "In Python, with transformers (the same folder: `model.safetensors` holds DistilBertForMaskedLM's weights):",
    '```python\n' +
      'from transformers import pipeline\n' +
      `unmasker = pipeline("fill-mask", model="./${name}")\n` +
      'print(unmasker("The capital of France is [MASK]."))\n' +
      '```',
  ].join('\n\n');
}
