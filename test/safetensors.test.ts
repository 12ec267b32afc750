import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeSafetensors, SafetensorsFile, writeSafetensors, type TensorToWrite } from '../src/core/safetensors.js';
import { FileFormatError } from '../src/core/errors.js';
import { GOLDEN, TINY } from './helpers.js';

function reencode(path: string): { original: Buffer; again: Uint8Array } {
  const original = readFileSync(path);
  const file = SafetensorsFile.read(path);
  const tensors = new Map<string, TensorToWrite>();
  for (const name of file.names()) {
    const t = file.get(name);
    tensors.set(name, { data: t.data, shape: t.shape, dtype: t.dtype });
  }
  return { original, again: encodeSafetensors(tensors, Object.keys(file.metadata).length ? file.metadata : undefined) };
}

describe('safetensors', () => {
  it('round-trips files written by Python byte for byte', () => {
    for (const path of [join(GOLDEN, 'reference.safetensors'), join(TINY, 'model.safetensors')]) {
      const { original, again } = reencode(path);
      expect(again.byteLength).toBe(original.byteLength);
      expect(Buffer.from(again).equals(original)).toBe(true);
    }
  });

  it('writes what it reads: values, shapes, dtypes and metadata', () => {
    const dir = mkdtempSync(join(tmpdir(), 'distill-st-'));
    const path = join(dir, 'x.safetensors');
    writeSafetensors(
      path,
      {
        a: { data: Float32Array.from([1.5, -2, 3e-8]), shape: [3] },
        b: { data: Int32Array.from([1, -100, 7, 8]), shape: [2, 2] },
        c: { data: BigInt64Array.from([5n, -6n]), shape: [2] },
      },
      { format: 'pt' },
    );
    const f = SafetensorsFile.read(path);
    expect(f.metadata).toEqual({ format: 'pt' });
    expect([...f.getFloat32('a')]).toEqual([1.5, -2, Math.fround(3e-8)]);
    expect(f.get('b').dtype).toBe('I32');
    expect(f.shapeOf('b')).toEqual([2, 2]);
    expect([...f.getInt32('b')]).toEqual([1, -100, 7, 8]);
    expect([...f.getInt32('c')]).toEqual([5, -6]);
    // The header is padded so the data starts 8-byte aligned.
    const bytes = readFileSync(path);
    expect((8 + Number(bytes.readBigUInt64LE(0))) % 8).toBe(0);
  });

  it('names the file for truncated data, a truncated header and a missing tensor', () => {
    const dir = mkdtempSync(join(tmpdir(), 'distill-st-bad-'));
    const full = readFileSync(join(GOLDEN, 'reference.safetensors'));
    const cut = join(dir, 'cut.safetensors');
    writeFileSync(cut, full.subarray(0, full.byteLength - 1000));
    expect(() => SafetensorsFile.read(cut)).toThrow(FileFormatError);
    expect(() => SafetensorsFile.read(cut)).toThrow(/cut\.safetensors: truncated: tensor ".*" ends at byte/);
    const headerCut = join(dir, 'header.safetensors');
    writeFileSync(headerCut, full.subarray(0, 40));
    expect(() => SafetensorsFile.read(headerCut)).toThrow(/header\.safetensors: truncated: header says/);
    const tiny = join(dir, 'tiny.safetensors');
    writeFileSync(tiny, full.subarray(0, 5));
    expect(() => SafetensorsFile.read(tiny)).toThrow(/tiny\.safetensors: truncated: 5 bytes/);
    const f = SafetensorsFile.read(join(GOLDEN, 'reference.safetensors'));
    expect(() => f.get('nope')).toThrow(/reference\.safetensors: missing tensor "nope"/);
    expect(() => f.getFloat32('input_ids')).toThrow(/is I32, expected a floating-point dtype/);
  });
});
