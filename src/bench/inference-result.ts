// What `distill bench --inference` gives per model and batch size (src/bench/inference.ts measures it), apart from
// onnxruntime: the model card (src/export/model-card.ts) reads these lines without loading it.

export const INFERENCE_KIND = 'inference';

export interface InferenceResult {
  kind: typeof INFERENCE_KIND;
  /** The folder's name, and "int8" for its quantized graph. */
  label: string;
  model: string;
  file: string;
  batch: number;
  sequence: number;
  tokens_per_s: number;
  p50_ms: number;
  p95_ms: number;
  runs: number;
  parameters: number;
  file_bytes: number;
  threads: number;
  /** The CPU (os.cpus()'s model) and its logical cores. */
  machine: string;
}

/** The results as a markdown table, with each model's speed against the first model's at the same batch size. */
export function inferenceTable(rows: InferenceResult[]): string {
  const lines = [
    '| model | batch × seq | tokens/s | vs first | p50 ms | p95 ms | parameters | file |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const base = rows.find((x) => x.batch === r.batch && x.sequence === r.sequence)!;
    lines.push(
      `| ${r.label} | ${r.batch} × ${r.sequence} | ${Math.round(r.tokens_per_s)} | ` +
        `${(r.tokens_per_s / base.tokens_per_s).toFixed(2)}× | ${r.p50_ms.toFixed(1)} | ${r.p95_ms.toFixed(1)} | ` +
        `${(r.parameters / 1e6).toFixed(2)} M | ${(r.file_bytes / 1e6).toFixed(1)} MB |`,
    );
  }
  return lines.join('\n');
}
