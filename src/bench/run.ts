// npm run bench: the benchmark tables of the README, measured on this machine in this run.
// Each benchmark runs in a child process so that timings and peak memory are its own.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writePublicDomainText } from '../../corpus/public-domain.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '..', '..', '..');
const TINY = join(REPO, 'teacher', 'tiny-bert-cased');

interface PrepareRun { bytes: number; seconds: number; mb_per_s: number; tokens: number; tokens_per_s: number; sequences: number; peak_rss_mb: number }

function runChild(script: string, args: string[]): PrepareRun {
  const r = spawnSync(process.execPath, [join(HERE, script), ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${script} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as PrepareRun;
}

function benchPrepare(): string {
  const work = mkdtempSync(join(tmpdir(), 'distill-bench-prepare-'));
  try {
    const one = join(work, 'x1', 'sotu-moby.txt');
    const ten = join(work, 'x10', 'sotu-moby-x10.txt');
    writePublicDomainText(one, ['sotu', 'moby-dick'], 1);
    writePublicDomainText(ten, ['sotu', 'moby-dick'], 10);
    const a = runChild('prepare-child.js', [TINY, join(work, 'out1'), one]);
    const b = runChild('prepare-child.js', [TINY, join(work, 'out10'), ten]);
    const rows = [
      '| corpus | MB | tokens | MB/s | tokens/s | peak RSS (MB) |',
      '|---|---|---|---|---|---|',
      `| SOTU + Moby Dick ×1 | ${(a.bytes / 1e6).toFixed(1)} | ${a.tokens.toLocaleString('en-US')} | ${a.mb_per_s.toFixed(2)} | ${Math.round(a.tokens_per_s).toLocaleString('en-US')} | ${a.peak_rss_mb.toFixed(0)} |`,
      `| SOTU + Moby Dick ×10 | ${(b.bytes / 1e6).toFixed(1)} | ${b.tokens.toLocaleString('en-US')} | ${b.mb_per_s.toFixed(2)} | ${Math.round(b.tokens_per_s).toLocaleString('en-US')} | ${b.peak_rss_mb.toFixed(0)} |`,
    ];
    const growth = (b.peak_rss_mb / a.peak_rss_mb - 1) * 100;
    rows.push('', `Peak RSS at 10× the corpus: ${growth >= 0 ? '+' : ''}${growth.toFixed(1)}% (target: within 20%).`);
    return rows.join('\n');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const sections = process.argv.slice(2);
const want = (name: string): boolean => sections.length === 0 || sections.includes(name);
if (want('prepare')) {
  process.stdout.write('### prepare (distill prepare, tiny-bert-cased tokenizer, max length 128)\n\n');
  process.stdout.write(benchPrepare() + '\n\n');
}
