// distill bench --inference: onnxruntime CPU inference of model folders (a teacher, an exported student, its int8
// graph), as an app would run them: the logits of random token ids, every position real. Per model and batch
// size: tokens/s (at the median latency), latency p50 and p95 over the timed runs after one warm-up, parameters
// and the graph file's size. The student/teacher ratio is DistilBERT's "60% faster" measured here.

import { existsSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import { basename, join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { assertModelDir, findOnnxFile, readEncoderConfig } from '../core/model-dir.js';
import { modelParameters } from '../core/parameters.js';
import { FileFormatError } from '../core/errors.js';
import { INFERENCE_KIND, type InferenceResult } from './inference-result.js';

export interface InferenceOptions {
  models: string[];
  /** Default [1, 32]. */
  batches?: number[];
  /** Default 128. */
  sequence?: number;
  /** Timed runs per model and batch (default: 20 at batch 1, 5 above), after one warm-up. */
  runs?: number;
  /** onnxruntime intra-op threads (0: onnxruntime's choice, every core). */
  threads?: number;
  onResult?: (r: InferenceResult) => void;
}

/** Each model's graphs: onnx/model.onnx or model.onnx, and onnx/model_quantized.onnx when the folder has it. */
function graphsOf(dir: string): { label: string; file: string }[] {
  const name = basename(resolve(dir));
  const out = [{ label: name, file: findOnnxFile(dir, false) }];
  const q = join(dir, 'onnx', 'model_quantized.onnx');
  if (existsSync(q)) out.push({ label: `${name} int8`, file: q });
  return out;
}

const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!; // nearest rank

export async function benchInference(o: InferenceOptions): Promise<InferenceResult[]> {
  for (const m of o.models) assertModelDir(m, '--model');
  const sequence = o.sequence ?? 128;
  const threads = o.threads ?? 0;
  const machine = `${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${cpus().length} logical cores`;
  const results: InferenceResult[] = [];
  for (const dir of o.models) {
    const config = readEncoderConfig(dir);
    if (sequence > config.maxPositions)
      throw new FileFormatError(
        join(dir, 'config.json'),
        `takes ${config.maxPositions} positions, fewer than --seq ${sequence}`,
        `bench it with --seq ${config.maxPositions} or less`,
      );
    const parameters = modelParameters(dir);
    for (const g of graphsOf(dir)) {
      const session = await ort.InferenceSession.create(g.file, {
        graphOptimizationLevel: 'all',
        intraOpNumThreads: threads,
        executionProviders: ['cpu'],
      });
      try {
        const output = session.outputNames.includes('logits') ? 'logits' : session.outputNames[0]!;
        for (const batch of o.batches ?? [1, 32]) {
          const feeds = randomFeeds(session.inputNames, batch, sequence, config.vocabSize);
          await session.run(feeds, [output]); // warm-up
          const runs = o.runs ?? (batch === 1 ? 20 : 5);
          const ms: number[] = [];
          for (let i = 0; i < runs; i++) {
            const t0 = performance.now();
            await session.run(feeds, [output]);
            ms.push(performance.now() - t0);
          }
          ms.sort((a, b) => a - b);
          const r: InferenceResult = {
            kind: INFERENCE_KIND,
            label: g.label,
            model: dir,
            file: g.file,
            batch,
            sequence,
            tokens_per_s: (batch * sequence) / (percentile(ms, 0.5) / 1000),
            p50_ms: percentile(ms, 0.5),
            p95_ms: percentile(ms, 0.95),
            runs,
            parameters,
            file_bytes: statSync(g.file).size,
            threads,
            machine,
          };
          results.push(r);
          o.onResult?.(r);
        }
      } finally {
        await session.release();
      }
    }
  }
  return results;
}

/** input_ids (random ids from 5: past BERT's special tokens), attention_mask all 1, token_type_ids 0 if asked for. */
function randomFeeds(
  names: readonly string[],
  batch: number,
  sequence: number,
  vocab: number,
): Record<string, ort.Tensor> {
  const n = batch * sequence;
  let state = 12345;
  const ids = BigInt64Array.from({ length: n }, () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0; // a fixed sequence: every model reads the same ids
    return BigInt(5 + (state % (vocab - 5)));
  });
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', ids, [batch, sequence]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [batch, sequence]),
  };
  if (names.includes('token_type_ids'))
    feeds['token_type_ids'] = new ort.Tensor('int64', new BigInt64Array(n), [batch, sequence]);
  return Object.fromEntries(Object.entries(feeds).filter(([k]) => names.includes(k)));
}
