// A full disk and a read-only one, for real: small tmpfs mounts (as root, as CI runs). Each command that writes ends
// with exit 1 and a message naming the path and saying how much the write needed; nothing half-written stays on the
// disk, and the folders the user had are as they were. A file where a folder should be needs no mount.
// Without root (a developer's machine), the mounts cannot be made: the tests say so and skip, except under CI=true,
// where they fail (CI runs as root and must run them).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { publicDomainParagraphs } from '../corpus/public-domain.js';
import { expectCleanError, runCli } from './cli-helpers.js';
import { TINY, canRun, folderDigest } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'distill-disk-'));
const full = join(work, 'full'); // 1 MB: a student (~9 MB) does not fit, a small corpus does not either
const readOnly = join(work, 'ro');
const text = join(work, 'moby.txt');

function mount(dir: string, options: string): boolean {
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const canMount = canRun(
  'disk-faults.test.ts (the real full and read-only disks)',
  process.getuid?.() === 0 && mount(full, 'size=1m') && mount(readOnly, 'ro,size=1m')
    ? undefined
    : 'cannot mount tmpfs (needs root)',
);

beforeAll(() => {
  writeFileSync(text, publicDomainParagraphs('moby-dick').slice(0, 2000).join('\n') + '\n');
});

afterAll(() => {
  for (const dir of [full, readOnly]) {
    try {
      execFileSync('umount', [dir], { stdio: 'ignore' });
    } catch {
      // not mounted
    }
  }
});

const listing = (dir: string): string[] => readdirSync(dir, { recursive: true }).map(String).sort();

describe.runIf(canMount)('a full disk (tmpfs of 1 MB)', () => {
  it('init-student: the message says what the write needed; nothing is left on the disk', () => {
    const r = runCli(['init-student', '--teacher', TINY, '--out', join(full, 'student')]);
    expectCleanError(
      r,
      /full\/student\.tmp-\d+\/model\.safetensors\.tmp-\d+: no space left on the disk while writing \(the write needed [\d.]+ MB\)/,
    );
    expect(r.stderr).toMatch(/hint: free space on that disk \(df -h .*full/);
    expect(listing(full)).toEqual([]);
  });

  it('prepare: the complete shards stay, no temp; the hint says the same command continues', () => {
    const before = folderDigest(TINY);
    const r = runCli([
      'prepare',
      '--tokenizer',
      TINY,
      '--out',
      join(full, 'corpus'),
      '--max-length',
      '48',
      '--shard-sequences',
      '200',
      text,
    ]);
    expectCleanError(r, /full\/corpus\/.*: no space left on the disk while writing/);
    expect(r.stderr).toMatch(/it continues from the last complete shard/);
    expect(listing(join(full, 'corpus')).filter((f) => /\.tmp-\d+$/.test(f))).toEqual([]);
    expect(folderDigest(TINY)).toBe(before);
  });
});

describe.runIf(canMount)('a read-only disk', () => {
  it('train, prepare, probe-data, make-teacher: exit 1, the path named, nothing written', () => {
    const config = join(work, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        teacher: TINY,
        corpus: join(readOnly, 'corpus'),
        corpus_inputs: [text],
        max_length: 48,
        max_steps: 1,
        batch_size: 4,
      }),
    );
    expectCleanError(
      runCli(['train', '--config', config, '--out', join(readOnly, 'run')]),
      /ro\/run: the file system is read-only \(creating the folder\)/,
    );
    expectCleanError(
      runCli(['prepare', '--tokenizer', TINY, '--out', join(readOnly, 'corpus'), text]),
      /ro\/corpus: the file system is read-only/,
    );
    expectCleanError(
      runCli(['probe-data', join(readOnly, 'tasks')]),
      /ro\/tasks\.tmp-\d+: the file system is read-only/,
    );
    expectCleanError(
      runCli(['make-teacher', '--shape', 'tiny', '--out', join(readOnly, 'teacher')]),
      /ro\/teacher\.tmp-\d+: the file system is read-only/,
    );
    expect(listing(readOnly)).toEqual([]);
  });
});

describe('a file where a folder should be (no mount needed)', () => {
  it('init-student and prepare under a file: the file named, nothing written', () => {
    const file = join(work, 'a-file');
    writeFileSync(file, 'mine');
    expectCleanError(
      runCli(['init-student', '--teacher', TINY, '--out', join(file, 'student')]),
      /a-file: is a file, where a folder is needed \(creating the folder\)/,
    );
    expectCleanError(
      runCli(['prepare', '--tokenizer', TINY, '--out', join(file, 'corpus'), text]),
      /a-file\/corpus: .*a-file is a file, where a folder is needed/,
    );
    expect(readdirSync(work).filter((f) => f.startsWith('a-file'))).toEqual(['a-file']);
  });
});
