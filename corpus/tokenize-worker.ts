// A tokenizer in a worker thread, for distill prepare (corpus/tokenize-pool.ts). Messages:
//   in:  { id, texts: string[] }
//   out: { kind: 'ready' } once the tokenizer is loaded, then { kind: 'result', id, ids, offsets } per batch, in the
//        order received (ids and offsets travel as transferred buffers), or { kind: 'error', id, message }.

import { parentPort, workerData } from 'node:worker_threads';
import { WordPieceTokenizer } from './tokenizer.js';
import { tokenizeBatch } from './tokenize-pool.js';

const port = parentPort!;
const tok = WordPieceTokenizer.fromDir((workerData as { dir: string }).dir);
port.on('message', (msg: { id: number; texts: string[] }) => {
  try {
    const { ids, offsets } = tokenizeBatch(tok, msg.texts);
    port.postMessage({ kind: 'result', id: msg.id, ids, offsets }, [
      ids.buffer as ArrayBuffer,
      offsets.buffer as ArrayBuffer,
    ]);
  } catch (e) {
    port.postMessage({ kind: 'error', id: msg.id, message: (e as Error).message });
  }
});
port.postMessage({ kind: 'ready' });
