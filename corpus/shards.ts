// The corpus's Arrow shards, checked when a run opens the corpus (not hours later, when the reader first
// reaches a bad one): each shard file exists, is an Arrow IPC file (magic at both ends, so a truncated copy
// fails here), has the schema prepare writes (one column input_ids: List<Int32>), and holds the record batches
// and rows meta.json says. Only each file's footer and its last record batch are read, so a corpus of any size
// is checked in moments. A shard damaged in its middle is still named by the reader when it gets there.

import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { AsyncRecordBatchFileReader, DataType, RecordBatchReader } from 'apache-arrow';
import { FileFormatError } from '../src/core/errors.js';
import { RECORD_BATCH_ROWS, type CorpusMeta } from './prepare.js';

const MAGIC = Buffer.from('ARROW1');
const HINT =
  'the shard is damaged or was replaced: prepare the corpus again (distill prepare, ' +
  'or delete the corpus folder so train prepares it)';

/**
 * Check every shard of the prepared corpus in `dir` against its meta.json; throws a FileFormatError naming the shard.
 */
export async function validateShards(dir: string, meta: CorpusMeta): Promise<void> {
  for (const shard of meta.shards) {
    const path = join(dir, shard.file);
    const fail = (what: string): FileFormatError => new FileFormatError(path, what, HINT);
    let file;
    try {
      file = await open(path, 'r');
    } catch (e) {
      throw fail(`cannot open: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} (meta.json lists it)`);
    }
    try {
      const { size } = await file.stat();
      const head = Buffer.alloc(MAGIC.length);
      const tail = Buffer.alloc(MAGIC.length);
      if (size < 2 * MAGIC.length + 4) throw fail(`${size} bytes: too short to be an Arrow file`);
      await file.read(head, 0, MAGIC.length, 0);
      await file.read(tail, 0, MAGIC.length, size - MAGIC.length);
      if (!head.equals(MAGIC)) throw fail('not an Arrow IPC file (no ARROW1 magic at its start)');
      if (!tail.equals(MAGIC)) throw fail(`${size} bytes and no Arrow footer at its end: the file is truncated`);
      let reader: AsyncRecordBatchFileReader;
      try {
        reader = (await (await RecordBatchReader.from(file)).open()) as AsyncRecordBatchFileReader;
      } catch (e) {
        throw fail(`its Arrow footer cannot be read: ${(e as Error).message}`);
      }
      const fields = reader.schema.fields;
      const column = fields[0];
      if (
        fields.length !== 1 ||
        column?.name !== 'input_ids' ||
        !DataType.isList(column.type) ||
        !DataType.isInt(column.type.children[0]?.type) ||
        column.type.children[0]!.type.bitWidth !== 32
      ) {
        throw fail(
          `schema ${fields.map((f) => `${f.name}: ${String(f.type)}`).join(', ')}; ` +
            `expected one column input_ids: List<Int32>`,
        );
      }
      if (reader.numRecordBatches !== shard.record_batches) {
        throw fail(`${reader.numRecordBatches} record batches, meta.json says ${shard.record_batches}`);
      }
      let rows = 0;
      if (shard.record_batches > 0) {
        let last;
        try {
          last = await reader.readRecordBatch(shard.record_batches - 1);
        } catch (e) {
          throw fail(`its last record batch cannot be read: ${(e as Error).message}`);
        }
        rows = (shard.record_batches - 1) * RECORD_BATCH_ROWS + (last?.numRows ?? 0);
      }
      if (rows !== shard.sequences) throw fail(`${rows} sequences, meta.json says ${shard.sequences}`);
    } finally {
      await file.close();
    }
  }
}
