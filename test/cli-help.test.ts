// `distill --help` and each command's --help: every command listed explains itself, in paragraphs that read
// whole at the width commander wraps to (80 columns when the output is not a terminal, as here); and --help (or
// a mistyped option) starts without loading what only a command's work needs.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from './cli-helpers.js';
import { REPO } from './helpers.js';

const WIDTH = 80;

/** The description paragraphs of a help text: the lines between the usage line and the first section heading. */
function descriptionParagraphs(help: string): string[][] {
  const lines = help.split('\n');
  const start = lines.findIndex((l) => l.startsWith('Usage: ')) + 1;
  const end = lines.findIndex((l, i) => i > start && /^(Arguments|Options|Commands):$/.test(l));
  const paragraphs: string[][] = [[]];
  for (const line of lines.slice(start, end)) {
    if (line === '') paragraphs.push([]);
    else paragraphs.at(-1)!.push(line);
  }
  return paragraphs.filter((p) => p.length > 0);
}

describe('--help', () => {
  const top = runCli(['--help']);
  const commands = top.stdout
    .split('\n')
    .slice(top.stdout.split('\n').indexOf('Commands:') + 1)
    .map((l) => /^ {2}([a-z][a-z-]*)\b/.exec(l)?.[1])
    .filter((c): c is string => c !== undefined && c !== 'help');

  it('lists the commands', () => {
    expect(top.status).toBe(0);
    expect(commands).toEqual(
      expect.arrayContaining([
        'train',
        'prepare',
        'init-student',
        'eval',
        'eval-batch',
        'fill-mask',
        'probe',
        'export',
        'plot',
        'bench',
        'make-teacher',
      ]),
    );
  });

  it('fits 80 columns, its descriptions wrapped greedily (no line that the next word would have fitted on)', () => {
    for (const command of ['', ...commands]) {
      const r = runCli(command ? [command, '--help'] : ['--help']);
      expect(r.status, command).toBe(0);
      // Every line, the examples and the environment variables included (those are written, not wrapped by commander).
      for (const line of r.stdout.split('\n')) expect(line.length, `${command}: "${line}"`).toBeLessThanOrEqual(WIDTH);
      const paragraphs = descriptionParagraphs(r.stdout);
      expect(paragraphs.length, command).toBeGreaterThan(0);
      for (const paragraph of paragraphs) {
        paragraph.forEach((line, i) => {
          expect(line.length, `${command}: "${line}"`).toBeLessThanOrEqual(WIDTH);
          const next = paragraph[i + 1];
          if (next !== undefined)
            expect(line.length + 1 + next.split(' ')[0]!.length, `${command}: "${line}" / "${next}"`).toBeGreaterThan(
              WIDTH,
            );
        });
      }
    }
  });

  it(
    'loads none of tfjs, onnxruntime, Apache Arrow, ' +
      'koffi or WebGPU to print the help (each command imports them when it runs)',
    () => {
      // A module-resolution hook prints every package module the CLI imports (ESM and the CommonJS entries it reaches).
      const hooks =
        'export async function resolve(s, c, next) { const r = await next(s, c); if ' +
        '(r.url.includes("/node_modules/")) ' +
        'console.error("LOADED " + r.url); return r; }';
      const register =
        `import { register } from "node:module"; ` + `register(${JSON.stringify(`data:text/javascript,${hooks}`)});`;
      const packagesLoaded = (args: string[]): string[] => {
        const r = spawnSync(
          process.execPath,
          ['--import', `data:text/javascript,${register}`, join(REPO, 'dist', 'src', 'cli.js'), ...args],
          { cwd: REPO, encoding: 'utf8' },
        );
        const found = [...r.stderr.matchAll(/^LOADED .*\/node_modules\/((?:@[^/]+\/)?[^/]+)\//gm)].map((m) => m[1]!);
        expect(found, r.stderr).toContain('commander'); // the hook sees what is loaded
        return [...new Set(found)];
      };
      const heavy = /^(@tensorflow\/|onnxruntime-node$|apache-arrow$|koffi$|webgpu$|wabt$)/;
      for (const args of [
        ['--help'],
        ['train', '--help'],
        ['bench', '--help'],
        ['eval', '--help'],
        ['fill-mask', '--help'],
        ['train', '--no-such-option'],
      ]) {
        expect(
          packagesLoaded(args).filter((p) => heavy.test(p)),
          args.join(' '),
        ).toEqual([]);
      }
      // The hook would have seen them: a command that runs a model loads onnxruntime.
      expect(
        packagesLoaded([
          'fill-mask',
          '--model',
          join(REPO, 'teacher', 'tiny-bert-cased'),
          '--text',
          'The [MASK] of the whale.',
        ]),
      ).toContain('onnxruntime-node');
    },
  );
});

describe('options named in messages', () => {
  /** Flags of other programs that the sources name (in hints, or in the commands they run), by program. */
  const OTHER_PROGRAMS: Record<string, string> = {
    '--allow-run-as-root': 'mpirun',
    '--oversubscribe': 'mpirun',
    '--version': 'mpirun',
    '--expose-gc': 'node',
    '--input-type': 'node',
    '--optimize': 'optimum-cli',
    '--porcelain': 'git',
    '--short': 'git',
    '--untracked-files': 'git',
  };

  it(
    'exist: every --flag in the sources is an option of a ' + 'distill command or a flag of the program it is given to',
    () => {
      const top = runCli(['--help']).stdout;
      const commands = [...top.matchAll(/^ {2}([a-z][a-z-]*)\b/gm)].map((m) => m[1]!).filter((c) => c !== 'help');
      const known = new Set(
        commands.flatMap((c) => [...runCli([c, '--help']).stdout.matchAll(/--[a-z][a-z0-9-]+/g)].map((m) => m[0])),
      );
      const sources = spawnSync('git', ['ls-files', 'src', 'teacher', 'student', 'losses', 'corpus'], {
        cwd: REPO,
        encoding: 'utf8',
      })
        .stdout.split('\n')
        .filter((f) => f.endsWith('.ts'));
      const unknown: string[] = [];
      for (const file of sources) {
        for (const m of readFileSync(join(REPO, file), 'utf8').matchAll(/--[a-z][a-z0-9-]+/g)) {
          if (!known.has(m[0]) && !(m[0] in OTHER_PROGRAMS)) unknown.push(`${file}: ${m[0]}`);
        }
      }
      expect(unknown).toEqual([]);
      expect(known).toContain('--resume'); // the scan reads real help texts
    },
  );
});
