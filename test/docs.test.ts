// README.md and docs/ stay true to the code: every `distill COMMAND --option` they show is an option of that
// command, every repository path in backticks exists, every config key they name is a key of the config spec,
// docs/config.md is generated from that spec, links between pages land, and commit hashes and dates appear only
// inside the blocks `npm run bench` writes (each with its stamp). docs/changelog.md is the history, kept as it was
// written: it is exempt.
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { distillProgram } from '../src/program.js';
import { CONFIG_KEYS } from '../src/config.js';
import { configMarkdown } from '../src/config-docs.js';
import { REPO } from './helpers.js';

const HISTORY = 'docs/changelog.md';
const PAGES = ['README.md', ...readdirSync(join(REPO, 'docs')).map((f) => `docs/${f}`)].filter(
  (p) => p.endsWith('.md') && p !== HISTORY,
);
const text = (page: string): string => readFileSync(join(REPO, page), 'utf8');

/** A piece of code a page shows: an inline span or one logical line of a fenced block (`\` continuations joined). */
interface Code {
  page: string;
  line: number;
  code: string;
  /** The fence's language for a block's line; undefined for an inline span. */
  lang?: string;
}

function codeOf(page: string): Code[] {
  const out: Code[] = [];
  const lines = text(page).split('\n');
  let fence: { lang: string; start: number; lines: string[] } | undefined;
  lines.forEach((line, i) => {
    const open = /^\s*```(\w*)/.exec(line);
    if (fence) {
      if (open) {
        const joined = fence.lines.join('\n').replace(/\\\n\s*/g, ' ');
        if (fence.lang === 'json' || fence.lang === 'jsonc') {
          out.push({ page, line: fence.start, code: joined, lang: fence.lang });
        } else for (const l of joined.split('\n')) out.push({ page, line: fence.start, code: l, lang: fence.lang });
        fence = undefined;
      } else fence.lines.push(line);
      return;
    }
    if (open) {
      fence = { lang: open[1] ?? '', start: i + 1, lines: [] };
      return;
    }
    for (const m of line.matchAll(/`([^`]+)`/g)) out.push({ page, line: i + 1, code: m[1]! });
  });
  return out;
}
const CODE = PAGES.flatMap(codeOf);
const where = (c: Code): string => `${c.page}:${c.line}: ${c.code}`;

/** Each command's long options, read from the program the CLI runs. */
const OPTIONS = new Map<string, Set<string>>(
  (distillProgram().commands as Command[]).map((c) => [
    c.name(),
    new Set(['--help', ...c.options.map((o) => o.long).filter((l): l is string => l !== undefined)]),
  ]),
);

/** The commands a piece of code runs, each with the options given to it: `distill CMD --a ...`, or `CMD --a ...`. */
function commandsIn(code: string): { command: string; options: string[]; tokens: string[] }[] {
  const found = [];
  for (const part of code.split(/&&|;|\s#\s/)) {
    const tokens = part.trim().split(/\s+/);
    let at = tokens.findIndex((t, i) => /(^|\/)distill$/.test(t) && /^[a-z]/.test(tokens[i + 1] ?? ''));
    if (at >= 0) at += 1;
    else if (OPTIONS.has(tokens[0] ?? '') && /^[[(]?--/.test(tokens[1] ?? '')) at = 0;
    else continue;
    const rest = tokens.slice(at + 1);
    const options = rest
      .map((t) => t.replace(/^[[(]+/, '').replace(/[\]),]+$/, ''))
      .filter((t) => t.startsWith('--'))
      .map((t) => t.split('=')[0]!);
    found.push({ command: tokens[at]!, options, tokens: rest });
  }
  return found;
}

describe('the docs', () => {
  it('README.md is at most 300 lines, and every docs page opens with what a user does there', () => {
    expect(text('README.md').split('\n').length).toBeLessThanOrEqual(300);
    for (const page of PAGES.filter((p) => p.startsWith('docs/'))) {
      const opening = text(page).split('\n').slice(0, 6).join('\n');
      expect(opening, page).toMatch(/^What you do here: /m);
    }
  });

  it('every `distill COMMAND --option` shown exists in that command', () => {
    let seen = 0;
    const problems: string[] = [];
    for (const c of CODE) {
      for (const { command, options } of commandsIn(c.code)) {
        if (!OPTIONS.has(command)) problems.push(`${where(c)}: no command "${command}"`);
        else
          for (const o of options)
            if (!OPTIONS.get(command)!.has(o)) problems.push(`${where(c)}: ${command} has no ${o}`);
        seen += options.length;
      }
    }
    expect(problems).toEqual([]);
    expect(seen).toBeGreaterThan(50); // the scan finds the commands the pages show (a broken scan finds none)
  });

  it('every repository path in backticks exists', () => {
    const roots = /^(src|teacher|student|losses|corpus|configs|test|docs|dist|\.ci)(\/|$)/;
    let seen = 0;
    const problems: string[] = [];
    for (const c of CODE.filter((x) => x.lang !== 'json' && x.lang !== 'jsonc')) {
      for (const raw of c.code.split(/[\s=]+/)) {
        const path = raw.replace(/^[[("'<]+/, '').replace(/[\]).,;:"'>]+$/, '');
        if (!roots.test(path) || !/^[\w./*@{}-]+$/.test(path)) continue;
        seen += 1;
        if (!pathExists(path)) problems.push(`${where(c)}: ${path} does not exist`);
      }
    }
    expect(problems).toEqual([]);
    expect(seen).toBeGreaterThan(50);
  });

  it('every config key named exists: --set KEY=VALUE, `key: value`, and the keys of json blocks', () => {
    const student = ['layers', 'hidden', 'heads', 'intermediate', 'teacher_layers'];
    const keys = new Set<string>([...CONFIG_KEYS, ...student, '$schema']);
    // `name: value` pairs the pages show from other formats: the shards' Arrow column, a metrics line's field,
    // transformers.js's pipeline option.
    const otherFormats = new Set(['input_ids', 'skipped', 'dtype']);
    let seen = 0;
    const problems: string[] = [];
    for (const c of CODE) {
      const named: string[] = [];
      if (c.lang === 'json' || c.lang === 'jsonc')
        named.push(...[...c.code.matchAll(/"([$\w]+)"\s*:/g)].map((m) => m[1]!));
      else {
        // `--set a=1 b=2`: every KEY=VALUE up to the next option (KEY in capitals is the placeholder).
        for (const { tokens } of commandsIn(c.code)) {
          let afterSet = false;
          for (const t of tokens) {
            if (t.startsWith('--')) afterSet = t === '--set';
            else if (afterSet && /^[a-z]\w*=/.test(t)) named.push(t.split('=')[0]!);
          }
        }
        const pair = /^"?([a-z][a-z0-9_]*)"?: \S/.exec(c.code);
        if (pair && c.lang === undefined && !otherFormats.has(pair[1]!)) named.push(pair[1]!);
      }
      problems.push(...named.filter((k) => !keys.has(k)).map((k) => `${where(c)}: "${k}" is not a config key`));
      seen += named.length;
    }
    expect(problems).toEqual([]);
    expect(seen).toBeGreaterThan(20);
  });

  it('docs/config.md is generated from the config spec (npm run schema) and names every key', () => {
    const page = text('docs/config.md');
    expect(page).toBe(configMarkdown());
    for (const k of CONFIG_KEYS) expect(page).toContain(`### \`${k}\``);
  });

  it('docs/architecture.md names every file of the folders it describes file by file', () => {
    const page = text('docs/architecture.md');
    const problems: string[] = [];
    for (const folder of ['src/train', 'src/eval', 'src/probe', 'src/export', 'configs']) {
      const row = page.split('\n').find((l) => l.startsWith(`| \`${folder}/\` |`));
      if (row === undefined) problems.push(`no row for ${folder}/`);
      for (const f of readdirSync(join(REPO, folder)).filter((x) => /\.(ts|json)$/.test(x))) {
        if (row !== undefined && !row.includes(`\`${f}\``)) problems.push(`${folder}/${f}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('links between pages land on a file', () => {
    for (const page of [...PAGES, HISTORY]) {
      for (const m of text(page).matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(m[1]!)) continue;
        expect(existsSync(join(REPO, dirname(page), m[1]!)), `${page}: link ${m[1]}`).toBe(true);
      }
    }
  });

  it('commit hashes and dates appear only inside the blocks npm run bench writes, each block stamped', () => {
    const sections = new Set(
      [...readFileSync(join(REPO, 'src', 'bench', 'run.ts'), 'utf8').matchAll(/section\(\s*'([\w-]+)'/g)].map(
        (m) => m[1]!,
      ),
    );
    let blocks = 0;
    const problems: string[] = [];
    for (const page of PAGES) {
      const outside = text(page).replace(
        /<!-- ([\w-]+):begin -->\n([^]*?)<!-- \1:end -->/g,
        (_, name: string, body: string) => {
          blocks += 1;
          expect(sections.has(name), `${page}: block ${name}: no npm run bench section writes it`).toBe(true);
          const stamp = /^Measured by `npm run bench( [\w-]+)?` at commit [0-9a-f]{7,40}\b.*; \d{4}-\d\d-\d\d\./.exec(
            body,
          );
          expect(stamp, `${page}: block ${name} does not start with its stamp`).not.toBeNull();
          expect([undefined, ` ${name}`], `${page}: block ${name} stamped by another section`).toContain(stamp![1]);
          return '\n'.repeat(body.split('\n').length); // the same lines, so that what follows keeps its line numbers
        },
      );
      outside.split('\n').forEach((line, i) => {
        const hash = /\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b/.exec(line);
        const date = /\b20\d\d-[01]\d-[0-3]\d\b/.exec(line);
        if (hash || date) problems.push(`${page}:${i + 1}: ${(hash ?? date)![0]} outside a bench block`);
      });
    }
    expect(problems, `history goes to ${HISTORY}`).toEqual([]);
    expect(blocks).toBeGreaterThanOrEqual(5);
  });
});

/** Whether a repository path exists; a `*` in its last part matches any characters. */
function pathExists(path: string): boolean {
  const clean = path.replace(/\/$/, '');
  if (!clean.includes('*')) return existsSync(join(REPO, clean));
  const folder = dirname(clean);
  const pattern = new RegExp(
    '^' +
      clean
        .slice(folder.length + 1)
        .replace(/[.]/g, '\\.')
        .replace(/\*/g, '.*') +
      '$',
  );
  return existsSync(join(REPO, folder)) && readdirSync(join(REPO, folder)).some((f) => pattern.test(f));
}
