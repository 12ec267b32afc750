// Benchmark helper, run as its own process: prepare a corpus and print one JSON line with the time and
// this process's peak resident memory (so each measurement starts from a fresh heap).
//   node dist/src/bench/prepare-child.js WORKERS TOKENIZER_DIR OUT_DIR INPUT...
// WORKERS: the tokenizing threads (prepareCorpus's workers option): a count, or auto.

import { WordPieceTokenizer } from '../../corpus/tokenizer.js';
import { autoWorkers, prepareCorpus } from '../../corpus/prepare.js';

const [workersArg, tokenizerDir, outDir, ...inputs] = process.argv.slice(2);
if (!workersArg || !/^(auto|\d+)$/.test(workersArg) || !tokenizerDir || !outDir || inputs.length === 0) {
  process.stderr.write('usage: prepare-child WORKERS TOKENIZER_DIR OUT_DIR INPUT...\n');
  process.exit(2);
}
const tok = WordPieceTokenizer.fromDir(tokenizerDir);
const started = process.hrtime.bigint();
// Shards of 5000 sequences: smaller than the ×1 corpus, so both sizes hold the same bounded shard buffer.
const meta = await prepareCorpus(tok, {
  outDir,
  inputs,
  maxLength: 128,
  shardSequences: 5000,
  onBadLine: 'error',
  workers: workersArg === 'auto' ? 'auto' : Number(workersArg),
});
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
const bytes = meta.inputs.reduce((n, i) => n + i.bytes, 0);
process.stdout.write(
  JSON.stringify({
    bytes,
    seconds,
    mb_per_s: bytes / 1e6 / seconds,
    tokens: meta.tokens,
    tokens_per_s: meta.tokens / seconds,
    sequences: meta.sequences.kept,
    shards: meta.shards.length,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    workers: workersArg === 'auto' ? autoWorkers(bytes) : Number(workersArg),
  }) + '\n',
);
