// Safetensors read and write. The format: 8 bytes little-endian u64 N, then N bytes of JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}, then the data
// buffer, each tensor little-endian and contiguous in row-major order.
// https://github.com/huggingface/safetensors#format

import { readFileSync } from 'node:fs';
import { FileFormatError } from './errors.js';
import { writeFileAtomic } from './out.js';

export type SafetensorsDType = 'F32' | 'F64' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export type TypedArray =
  Float32Array | Float64Array | Int32Array | Int16Array | Int8Array | Uint8Array | BigInt64Array | Uint16Array;

export interface SafeTensor {
  dtype: SafetensorsDType;
  shape: number[];
  /** A copy of the tensor's bytes, aligned for its element type. F16/BF16 come as raw Uint16Array. */
  data: TypedArray;
}

const BYTES_PER_ELEMENT: Record<SafetensorsDType, number> = {
  F32: 4,
  F64: 8,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

function typedArrayFor(dtype: SafetensorsDType, bytes: Uint8Array): TypedArray {
  // Copy into a fresh, aligned buffer: slices of the file buffer can be misaligned.
  const buf = bytes.slice().buffer;
  switch (dtype) {
    case 'F32':
      return new Float32Array(buf);
    case 'F64':
      return new Float64Array(buf);
    case 'F16':
    case 'BF16':
      return new Uint16Array(buf);
    case 'I64':
      return new BigInt64Array(buf);
    case 'I32':
      return new Int32Array(buf);
    case 'I16':
      return new Int16Array(buf);
    case 'I8':
      return new Int8Array(buf);
    case 'U8':
    case 'BOOL':
      return new Uint8Array(buf);
  }
}

function dtypeOf(data: TypedArray, file: string, name: string): SafetensorsDType {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Float64Array) return 'F64';
  if (data instanceof Int32Array) return 'I32';
  if (data instanceof BigInt64Array) return 'I64';
  if (data instanceof Int16Array) return 'I16';
  if (data instanceof Int8Array) return 'I8';
  if (data instanceof Uint8Array) return 'U8';
  throw new FileFormatError(
    file,
    `tensor "${name}": cannot infer a dtype for ${data.constructor.name}; pass dtype explicitly`,
  );
}

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  private readonly entries: Map<string, HeaderEntry>;
  private readonly data: Uint8Array;

  private constructor(
    path: string,
    metadata: Record<string, string>,
    entries: Map<string, HeaderEntry>,
    data: Uint8Array,
  ) {
    this.path = path;
    this.metadata = metadata;
    this.entries = entries;
    this.data = data;
  }

  static read(path: string): SafetensorsFile {
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (e) {
      throw new FileFormatError(path, `cannot read: ${(e as Error).message}`);
    }
    return SafetensorsFile.parse(path, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }

  static parse(path: string, bytes: Uint8Array): SafetensorsFile {
    if (bytes.byteLength < 8) {
      throw new FileFormatError(
        path,
        `truncated: ${bytes.byteLength} bytes, a safetensors file starts with an 8-byte header length`,
      );
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const headerLen = Number(view.getBigUint64(0, true));
    if (headerLen > bytes.byteLength - 8) {
      throw new FileFormatError(
        path,
        `truncated: header says ${headerLen} bytes of JSON but the file has ${bytes.byteLength - 8} after the length`,
        'the file was cut short (an interrupted download or copy?): copy it again',
      );
    }
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen))) as Record<string, unknown>;
    } catch (e) {
      throw new FileFormatError(path, `header is not valid JSON (${(e as Error).message}); not a safetensors file?`);
    }
    const data = bytes.subarray(8 + headerLen);
    const entries = new Map<string, HeaderEntry>();
    let metadata: Record<string, string> = {};
    for (const [name, value] of Object.entries(header)) {
      if (name === '__metadata__') {
        metadata = value as Record<string, string>;
        continue;
      }
      const e = value as HeaderEntry;
      if (!e || typeof e.dtype !== 'string' || !Array.isArray(e.shape) || !Array.isArray(e.data_offsets)) {
        throw new FileFormatError(path, `tensor "${name}": header entry lacks dtype, shape or data_offsets`);
      }
      if (!(e.dtype in BYTES_PER_ELEMENT)) {
        throw new FileFormatError(path, `tensor "${name}": unsupported dtype ${e.dtype}`);
      }
      const [begin, end] = e.data_offsets;
      const count = e.shape.reduce((a, b) => a * b, 1);
      if (end - begin !== count * BYTES_PER_ELEMENT[e.dtype as SafetensorsDType]) {
        throw new FileFormatError(path, `tensor "${name}": ${end - begin} bytes for shape [${e.shape}] of ${e.dtype}`);
      }
      if (end > data.byteLength) {
        throw new FileFormatError(
          path,
          `truncated: tensor "${name}" ends at byte ${end} of the data but the data has ${data.byteLength} bytes`,
          'the file was cut short (an interrupted download or copy?): copy it again',
        );
      }
      entries.set(name, e);
    }
    return new SafetensorsFile(path, metadata, entries, data);
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  shapeOf(name: string): number[] {
    return [...this.entry(name).shape];
  }

  get(name: string): SafeTensor {
    const e = this.entry(name);
    const [begin, end] = e.data_offsets;
    const dtype = e.dtype as SafetensorsDType;
    return { dtype, shape: [...e.shape], data: typedArrayFor(dtype, this.data.subarray(begin, end)) };
  }

  /** The tensor as float32 (F32, F64, F16 and BF16 are converted). */
  getFloat32(name: string, expectShape?: number[]): Float32Array {
    const t = this.get(name);
    if (expectShape && (t.shape.length !== expectShape.length || t.shape.some((d, i) => d !== expectShape[i]))) {
      throw new FileFormatError(this.path, `tensor "${name}" has shape [${t.shape}], expected [${expectShape}]`);
    }
    switch (t.dtype) {
      case 'F32':
        return t.data as Float32Array;
      case 'F64':
        return Float32Array.from(t.data as Float64Array);
      case 'F16':
        return Float32Array.from(t.data as Uint16Array, halfToFloat);
      case 'BF16':
        return Float32Array.from(t.data as Uint16Array, (b) => bf16ToFloat(b));
      default:
        throw new FileFormatError(this.path, `tensor "${name}" is ${t.dtype}, expected a floating-point dtype`);
    }
  }

  /** The tensor as int32 (I64 values must fit in 32 bits). */
  getInt32(name: string): Int32Array {
    const t = this.get(name);
    switch (t.dtype) {
      case 'I32':
        return t.data as Int32Array;
      case 'I64':
        return Int32Array.from(t.data as BigInt64Array, (v) => Number(v));
      case 'I16':
      case 'I8':
      case 'U8':
        return Int32Array.from(t.data as Int16Array);
      default:
        throw new FileFormatError(this.path, `tensor "${name}" is ${t.dtype}, expected an integer dtype`);
    }
  }

  private entry(name: string): HeaderEntry {
    const e = this.entries.get(name);
    if (!e) {
      const known = this.names();
      throw new FileFormatError(
        this.path,
        `missing tensor "${name}" (the file holds ${known.length} ` +
          `tensors${known.length ? `, e.g. ${known.slice(0, 3).join(', ')}` : ''})`,
      );
    }
    return e;
  }
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

const bf16Scratch = new Float32Array(1);
const bf16Bits = new Uint32Array(bf16Scratch.buffer);
function bf16ToFloat(b: number): number {
  bf16Bits[0] = b << 16;
  return bf16Scratch[0]!;
}

export interface TensorToWrite {
  data: TypedArray;
  shape: number[];
  dtype?: SafetensorsDType;
}

/**
 * Serialise tensors in the order given (safetensors readers do not care about order; we keep the caller's
 * so that the same inputs give byte-identical files). The header is padded with spaces to a multiple of 8.
 */
export function encodeSafetensors(
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
  fileForErrors = '<safetensors>',
): Uint8Array {
  const list = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (metadata) header['__metadata__'] = metadata;
  let offset = 0;
  for (const [name, t] of list) {
    const dtype = t.dtype ?? dtypeOf(t.data, fileForErrors, name);
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) {
      throw new FileFormatError(
        fileForErrors,
        `tensor "${name}": shape [${t.shape}] holds ${count} values but ${t.data.length} were given`,
      );
    }
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  const pad = (8 - ((Buffer.byteLength(json) + 8) % 8)) % 8;
  json += ' '.repeat(pad);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.byteLength;
  for (const [, t] of list) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    pos += t.data.byteLength;
  }
  return out;
}

/** Write atomically: a temp file beside the target, fsynced, then renamed over it. */
export function writeSafetensors(
  path: string,
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): void {
  writeFileAtomic(path, encodeSafetensors(tensors, metadata, path));
}
