import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Teacher } from '../teacher/teacher.js';
import { fillMask, topKSoftmax } from '../teacher/fill-mask.js';
import { TINY } from './helpers.js';
import { runCli } from './cli-helpers.js';
import reference from './fixtures/tiny-bert-cased/reference.json' with { type: 'json' };

// JSON gives (string | number)[][]
const expected = reference.fill_mask_teacher_top5 as unknown as Record<string, [string, number][]>;

describe('fill-mask library', () => {
  let model: Teacher;
  beforeAll(async () => {
    model = await Teacher.load(TINY, { hiddenStates: 'none' });
  });
  afterAll(async () => {
    await model.release();
  });

  it(
    'top-5 of the five prompts equals the reference (tokens exact, ' + 'scores within 1e-3), batched together',
    async () => {
      const prompts = Object.keys(expected);
      const results = await fillMask(
        model,
        prompts.map((text) => ({ text, origin: 'test' })),
        5,
      );
      prompts.forEach((p, i) => {
        const got = results[i]![0]!;
        expect(got.map((g) => g.token)).toEqual(expected[p]!.map(([t]) => t));
        got.forEach((g, k) => expect(Math.abs(g.score - expected[p]![k]![1])).toBeLessThan(1e-3));
      });
    },
  );

  it('gives one ranked list per mask, and [mask] works like [MASK]', async () => {
    const [lower, upper] = await fillMask(
      model,
      [
        { text: 'The President of the [mask] [MASK] delivered the address.', origin: 't' },
        { text: 'The President of the [MASK] [MASK] delivered the address.', origin: 't' },
      ],
      3,
    );
    expect(lower!.length).toBe(2);
    expect(lower).toEqual(upper);
    expect(lower![0]).not.toEqual(lower![1]);
  });

  it('topKSoftmax ranks and normalises', () => {
    const top = topKSoftmax(Float32Array.from([0, Math.log(3), Math.log(2), 0]), 2);
    expect(top.map((t) => t.id)).toEqual([1, 2]);
    expect(top[0]!.score).toBeCloseTo(3 / 7, 6);
    expect(top[1]!.score).toBeCloseTo(2 / 7, 6);
  });

  it("rejects an input without a mask, and one longer than the model's positions", async () => {
    await expect(fillMask(model, [{ text: 'No mask.', origin: 'x.json: input 2' }], 5)).rejects.toThrow(
      /x\.json: input 2: no mask token/,
    );
    const long = `${'word '.repeat(200)}[MASK].`;
    await expect(fillMask(model, [{ text: long, origin: '--text' }], 5)).rejects.toThrow(
      /longer than the model's 128 positions/,
    );
  });
});

describe('distill fill-mask (CLI)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'distill-fm-'));

  it('ranks "States" first for the README example', () => {
    const r = runCli([
      'fill-mask',
      '--model',
      TINY,
      '--text',
      'The President of the United [MASK] delivered the address.',
    ]);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, string>[];
    expect(out[0]!['0']).toBe('States');
    expect(Object.keys(out[0]!)).toEqual(['0', '1', '2', '3', '4']);
  });

  it('reads the model card format and prints scores', () => {
    const file = join(dir, 'inputs.json');
    writeFileSync(
      file,
      JSON.stringify({ inputs: { input_string: ['Paris is the [MASK] of France.', 'Today is a [MASK] day!'] } }),
    );
    const r = runCli(['fill-mask', '--model', TINY, '--input', file, '--scores', '--top-k', '2']);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { token: string; token_id: number; score: number }[][];
    expect(out.length).toBe(2);
    expect(out[1]![0]!.token).toBe('new');
    expect(Math.abs(out[1]![0]!.score - 0.1742)).toBeLessThan(1e-3);
  });

  it('streams JSONL line by line', () => {
    const file = join(dir, 'inputs.jsonl');
    writeFileSync(
      file,
      Array.from({ length: 5 }, () => JSON.stringify({ text: 'Today is a [MASK] day!' })).join('\n') + '\n',
    );
    const r = runCli(['fill-mask', '--model', TINY, '--input', file, '--input-format', 'jsonl', '--batch-size', '2']);
    expect(r.status).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, string>);
    expect(lines.length).toBe(5);
    expect(lines.every((l) => l['0'] === 'new')).toBe(true);
  });

  it('gives clear errors for bad input', () => {
    const noMask = runCli(['fill-mask', '--model', TINY, '--text', 'nothing to fill']);
    expect(noMask.status).toBe(1);
    expect(noMask.stderr).toMatch(/error: --text: no mask token/);
    expect(noMask.stderr).toMatch(/hint: write \[MASK\]/);

    const missing = runCli(['fill-mask', '--model', TINY, '--input', join(dir, 'nope.json')]);
    expect(missing.stderr).toMatch(/nope\.json: no such file/);

    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{"inputs": ');
    expect(runCli(['fill-mask', '--model', TINY, '--input', broken]).stderr).toMatch(/broken\.json: not valid JSON/);

    const wrongField = join(dir, 'field.json');
    writeFileSync(wrongField, '{"inputs": {"text": "a [MASK]"}}');
    expect(runCli(['fill-mask', '--model', TINY, '--input', wrongField]).stderr).toMatch(
      /field "inputs\.input_string" is missing/,
    );

    const badLine = join(dir, 'bad.jsonl');
    writeFileSync(badLine, '{"text": "a [MASK] b"}\n{"text": oops}\n');
    expect(runCli(['fill-mask', '--model', TINY, '--input', badLine, '--input-format', 'jsonl']).stderr).toMatch(
      /bad\.jsonl:2: not valid JSON/,
    );

    const longText = runCli(['fill-mask', '--model', TINY, '--text', `${'word '.repeat(200)}[MASK]`]);
    expect(longText.stderr).toMatch(/longer than the model's 128 positions/);

    const noModel = runCli(['fill-mask', '--model', join(dir, 'nomodel'), '--text', 'a [MASK]']);
    expect(noModel.stderr).toMatch(/nomodel: no such folder \(given as --model\)/);

    const badK = runCli(['fill-mask', '--model', TINY, '--text', 'a [MASK]', '--top-k', '0']);
    expect(badK.status).toBe(1);
    expect(badK.stderr).toMatch(/--top-k "0": expected a whole number from 1/);
  });

  it('--help explains the command', () => {
    const r = runCli(['fill-mask', '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/--input-format/);
    expect(r.stdout).toMatch(/Examples:/);
  });
});
