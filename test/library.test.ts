// The library entry (package.json "exports" → dist/src/index.js): the README's "Use from TypeScript" example,
// taken from the README itself, runs as written (importing 'distill' by the package's own name).
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './helpers.js';

/** The ```ts block under the README's "Use from TypeScript" heading. */
function readmeExample(): string {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Use from TypeScript'));
  const match = /```ts\n([\s\S]*?)```/.exec(section);
  if (!match) throw new Error('README.md: no ```ts block under "## Use from TypeScript"');
  return match[1]!;
}

describe('distill as a library', () => {
  it('exports train, prepare, probe, the teacher and student loaders and fillMask, with types', async () => {
    const lib = await import('../src/index.js');
    for (const name of [
      'train',
      'loadConfig',
      'prepare',
      'probe',
      'Teacher',
      'loadStudent',
      'fillMask',
      'selectBackend',
      'DistillError',
    ]) {
      expect(lib[name as keyof typeof lib], name).toBeDefined();
    }
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
      exports: Record<string, { types: string; import: string }>;
    };
    expect(existsSync(join(REPO, pkg.exports['.']!.import))).toBe(true);
    expect(existsSync(join(REPO, pkg.exports['.']!.types))).toBe(true);
  });

  it('runs the README example as written', () => {
    // Written inside the package (so that `import ... from 'distill'` resolves to this package), run by Node.
    const dir = mkdtempSync(join(REPO, '.tmp-library-'));
    const runs = join(REPO, 'runs', 'library-example');
    try {
      rmSync(runs, { recursive: true, force: true });
      const file = join(dir, 'example.mjs');
      writeFileSync(file, readmeExample());
      const r = spawnSync(process.execPath, [file], { cwd: REPO, encoding: 'utf8', timeout: 240_000 });
      expect(r.status, r.stderr).toBe(0);
      const [loss, fillMaskTop] = r.stdout.trim().split('\n');
      expect(Number(loss)).toBeGreaterThan(0);
      expect(fillMaskTop!.length).toBeGreaterThan(0);
      expect(existsSync(join(runs, 'metrics.jsonl'))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(runs, { recursive: true, force: true });
    }
  });
});
