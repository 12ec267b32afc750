// Tokenizing for distill prepare, on this thread or in worker threads (corpus/tokenize-worker.ts): tokenize() takes a
// batch of texts and resolves with their ids, concatenated. Each worker loads the same tokenizer folder, so the ids
// are the same whichever thread tokenizes (a tokenizer's memory of chunks changes its speed, never its ids); batches
// go to the workers in turn and each worker answers its own in order,
// so the caller can await them in the order it sent them.

import { Worker } from 'node:worker_threads';
import { DistillError } from '../src/core/errors.js';
import { compiledWorkerScript } from '../src/core/worker-script.js';
import type { WordPieceTokenizer } from './tokenizer.js';

/** The ids of a batch of texts: text i's are ids[offsets[i] .. offsets[i + 1]). */
export interface TokenizedBatch {
  ids: Int32Array;
  offsets: Int32Array;
}

export interface BatchTokenizer {
  /** Threads tokenizing (0: this one). */
  readonly workers: number;
  tokenize(texts: string[]): Promise<TokenizedBatch>;
  close(): Promise<void>;
}

/** Texts' ids, concatenated (what a worker sends back). */
export function tokenizeBatch(tok: WordPieceTokenizer, texts: string[]): TokenizedBatch {
  const perText = texts.map((t) => tok.tokenizeToIds(t));
  const offsets = new Int32Array(texts.length + 1);
  for (let i = 0; i < perText.length; i++) offsets[i + 1] = offsets[i]! + perText[i]!.length;
  const ids = new Int32Array(offsets[texts.length]!);
  perText.forEach((p, i) => ids.set(p, offsets[i]!));
  return { ids, offsets };
}

/** Tokenizing on this thread. */
export function localTokenizer(tok: WordPieceTokenizer): BatchTokenizer {
  return {
    workers: 0,
    tokenize: (texts) => Promise.resolve(tokenizeBatch(tok, texts)),
    close: () => Promise.resolve(),
  };
}

type Reply =
  | { kind: 'ready' }
  | { kind: 'result'; id: number; ids: Int32Array; offsets: Int32Array }
  | { kind: 'error'; id: number; message: string };

/** `count` worker threads, each with the tokenizer of folder `dir`; resolves once all have loaded it. */
export async function startTokenizerPool(dir: string, count: number): Promise<BatchTokenizer> {
  const script = compiledWorkerScript(import.meta.url, 'corpus', 'tokenize-worker.js');
  const pending = new Map<number, { resolve: (b: TokenizedBatch) => void; reject: (e: Error) => void }>();
  let failure: Error | undefined;
  const fail = (e: Error): void => {
    failure ??= e;
    for (const p of pending.values()) p.reject(failure);
    pending.clear();
  };
  // The workers take this process's Node options, except --input-type, which only `node -e` accepts. A young generation
  // of 16 MB instead of V8's default saves ~50 MB a worker at the same speed (SOTU + Moby Dick ×10, 2 workers).
  const execArgv = process.execArgv.filter((a) => !a.startsWith('--input-type'));
  const workers = Array.from(
    { length: count },
    () => new Worker(script, { workerData: { dir }, execArgv, resourceLimits: { maxYoungGenerationSizeMb: 16 } }),
  );
  let closing = false;
  const ready = workers.map(
    (w) =>
      new Promise<void>((resolve, reject) => {
        w.on('message', (msg: Reply) => {
          if (msg.kind === 'ready') {
            resolve();
            return;
          }
          const p = pending.get(msg.id);
          if (!p) return;
          pending.delete(msg.id);
          if (msg.kind === 'result') p.resolve({ ids: msg.ids, offsets: msg.offsets });
          else p.reject(new DistillError(`tokenizer worker: ${msg.message}`));
        });
        w.on('error', (e) => {
          const err = new DistillError(`tokenizer worker failed: ${e.message}`);
          reject(err);
          fail(err);
        });
        w.on('exit', (code) => {
          if (closing) return;
          const err = new DistillError(`tokenizer worker stopped (exit code ${code})`);
          reject(err);
          fail(err);
        });
      }),
  );
  const close = async (): Promise<void> => {
    closing = true;
    await Promise.all(workers.map((w) => w.terminate()));
  };
  try {
    await Promise.all(ready);
  } catch (e) {
    await close();
    throw e;
  }
  let nextId = 0;
  return {
    workers: count,
    tokenize(texts: string[]): Promise<TokenizedBatch> {
      if (failure) return Promise.reject(failure);
      const id = nextId++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        workers[id % count]!.postMessage({ id, texts });
      });
    },
    close,
  };
}
