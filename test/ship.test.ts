// Shipping the student: the int8 quantization's arithmetic (worked by hand), the int8 graph against the fp32 one,
// the model card (only what was measured; bad report files are clean errors) and `distill bench --inference`.
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { quantizePerColumn } from '../src/core/onnx-writer.js';
import { expectCleanError, runCli } from './cli-helpers.js';
import { TINY } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'distill-ship-'));

describe('int8 weights, per output column', () => {
  it('scale = max|column| / 127, values rounded half to even, a column of zeros at scale 1', () => {
    // W [in 2, out 3] = [[127, 254, 0], [−63.5, 5, 0]]: column maxima 127, 254, 0 → scales 1, 2 and 1 (zeros);
    // values 127, −63.5 → −64 (half to even); 127, 2.5 → 2; 0, 0.
    const { values, scales } = quantizePerColumn(Float32Array.from([127, 254, 0, -63.5, 5, 0]), 2, 3);
    expect(Array.from(scales)).toEqual([1, 2, 1]);
    expect(Array.from(values)).toEqual([127, 127, 0, -64, 2, 0]);
    // 2.5 → 2 and 3.5 → 4 (half to even, as numpy's round), not 3 and 4 (Math.round).
    const even = quantizePerColumn(Float32Array.from([127, 2.5, 3.5, -2.5]), 4, 1).values;
    expect(Array.from(even)).toEqual([127, 2, 4, -2]);
  });
});

describe('distill export --quantize int8, and bench --inference', () => {
  const student = join(work, 'student');
  const out = join(work, 'export');
  beforeAll(() => {
    expect(runCli(['init-student', '--teacher', TINY, '--out', student, '--no-onnx']).status).toBe(0);
    const r = runCli(['export', '--student', student, '--out', out, '--quantize', 'int8']);
    expect(r.status, r.stderr).toBe(0);
  }, 120_000);

  it("the int8 graph gives the fp32 graph's hidden states within the quantization's error, ~4× smaller", async () => {
    const fp32 = await ort.InferenceSession.create(join(out, 'onnx', 'model.onnx'));
    const int8 = await ort.InferenceSession.create(join(out, 'onnx', 'model_quantized.onnx'));
    const ids = BigInt64Array.from([2n, 1486n, 226n, 105n, 4n, 552n, 3n]);
    const feeds = {
      input_ids: new ort.Tensor('int64', ids, [1, 7]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(7).fill(1n), [1, 7]),
    };
    const [a, b] = [await fp32.run(feeds), await int8.run(feeds)];
    const x = a['last_hidden_state']!.data as Float32Array;
    const y = b['last_hidden_state']!.data as Float32Array;
    let num = 0;
    let den = 0;
    x.forEach((v, i) => ((num += (v - y[i]!) ** 2), (den += v * v)));
    // Each int8 product's relative error is about 2^-8 (weights and activations each rounded to 1/254 of their
    // range); 2 layers of 6 products add to a few percent after the LayerNorms: within 5%, and not 0 (another
    // graph ran). A wrong scale (per row instead of per column, or ×127) is off by 100% or more.
    expect(Math.sqrt(num / den)).toBeLessThan(0.05);
    expect(Math.sqrt(num / den)).toBeGreaterThan(0);
    const ratio =
      statSync(join(out, 'onnx', 'model.onnx')).size / statSync(join(out, 'onnx', 'model_quantized.onnx')).size;
    expect(ratio).toBeGreaterThan(3.5); // fp32 → int8 weights, one table for the lookup and the projector
    await fp32.release();
    await int8.release();
  });

  it('bench --inference: one JSON line per graph and batch size, a table on stderr', () => {
    const r = runCli(
      ['bench', '--inference', '--model', TINY, '--model', out, '--batch-sizes', '1,2', '--seq', '16', '--runs', '2'],
      { timeoutMs: 120_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    const rows = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number | string>);
    expect(rows.map((x) => [x['label'], x['batch']])).toEqual([
      ['tiny-bert-cased', 1],
      ['tiny-bert-cased', 2],
      ['export', 1],
      ['export', 2],
      ['export int8', 1],
      ['export int8', 2],
    ]);
    expect(rows[0]!['parameters']).toBe(3_028_032); // the teacher's model.safetensors
    expect(rows[2]!['parameters']).toBe(2_137_920); // the student's: 2 of the 4 layers, the embeddings
    expect(rows[4]!['file_bytes']).toBe(statSync(join(out, 'onnx', 'model_quantized.onnx')).size);
    for (const x of rows) {
      expect(x['p50_ms']).toBeLessThanOrEqual(x['p95_ms'] as number);
      // tokens/s is batch × sequence at the median latency
      expect(x['tokens_per_s']).toBeCloseTo(((x['batch'] as number) * 16) / ((x['p50_ms'] as number) / 1000), 6);
    }
    expect(r.stderr).toMatch(/\| export int8 \| 2 × 16 \| \d+ \| \d+\.\d\d× \|/);
    writeFileSync(join(work, 'bench.jsonl'), r.stdout);
  }, 120_000);

  it('the model card: the teacher, the bench report; a bad report is a clean error before any work', () => {
    const card = join(work, 'export-card');
    const r = runCli([
      'export',
      '--student',
      student,
      '--out',
      card,
      '--teacher',
      TINY,
      '--bench-report',
      join(work, 'bench.jsonl'),
    ]);
    expect(r.status, r.stderr).toBe(0);
    const text = readFileSync(join(card, 'README.md'), 'utf8');
    expect(text).toMatch(/^---\nlicense: other\nbase_model: ".*tiny-bert-cased"\n/);
    expect(text).toContain('| teacher | 3.03 M | |');
    expect(text).toContain("| student | 2.14 M (70.6% of the teacher's) |");
    expect(text).toMatch(/## Inference speed[\s\S]*\| export int8 \| 2 × 16 \| \d+ \| \d+\.\d\d× \|/);
    expect(text).not.toContain('## Validation'); // init-student's output: no run, no evaluation
    expect(text).not.toContain('## Probes');

    const notJson = join(work, 'not.json');
    writeFileSync(notJson, 'hello');
    expectCleanError(
      runCli(['export', '--student', student, '--out', join(work, 'x'), '--probe-report', notJson]),
      /not\.json: not JSON/,
    );
    const other = join(work, 'other.json');
    writeFileSync(other, '{"tasks": []}');
    expectCleanError(
      runCli(['export', '--student', student, '--out', join(work, 'y'), '--probe-report', other]),
      /other\.json: not a report of distill probe/,
    );
  }, 120_000);
});
