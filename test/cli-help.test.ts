// `distill --help` and each command's --help: every command listed explains itself, in paragraphs that read
// whole at the width commander wraps to (80 columns when the output is not a terminal, as here).
import { describe, expect, it } from 'vitest';
import { runCli } from './cli-helpers.js';

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
  const commands = top.stdout.split('\n').slice(top.stdout.split('\n').indexOf('Commands:') + 1)
    .map((l) => /^ {2}([a-z][a-z-]*)\b/.exec(l)?.[1]).filter((c): c is string => c !== undefined && c !== 'help');

  it('lists the commands', () => {
    expect(top.status).toBe(0);
    expect(commands).toEqual(expect.arrayContaining(['train', 'prepare', 'init-student', 'eval', 'eval-batch', 'fill-mask', 'probe', 'export', 'plot', 'bench', 'make-teacher']));
  });

  it('wraps every description greedily at 80 columns: no line longer, none that the next word would have fitted on', () => {
    for (const command of ['', ...commands]) {
      const r = runCli(command ? [command, '--help'] : ['--help']);
      expect(r.status, command).toBe(0);
      const paragraphs = descriptionParagraphs(r.stdout);
      expect(paragraphs.length, command).toBeGreaterThan(0);
      for (const paragraph of paragraphs) {
        paragraph.forEach((line, i) => {
          expect(line.length, `${command}: "${line}"`).toBeLessThanOrEqual(WIDTH);
          const next = paragraph[i + 1];
          if (next !== undefined) expect(line.length + 1 + next.split(' ')[0]!.length, `${command}: "${line}" / "${next}"`).toBeGreaterThan(WIDTH);
        });
      }
    }
  });
});
