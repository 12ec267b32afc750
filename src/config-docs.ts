// docs/config.md, generated from CONFIG_SPEC as configs/schema.json is (npm run schema writes both; a test checks
// that both files are current): every key of a run config with its meaning, default, allowed values and whether
// `distill train --resume --set` may change it.

import { CONFIG_KEYS, CONFIG_SPEC, describe } from './config.js';

const HEADER = `<!-- Generated from src/config.ts (CONFIG_SPEC) by \`npm run schema\`; edit the spec, not this file. -->

# The run config

What you do here: look up a key of the JSON file that \`distill train --config FILE\` reads. An unknown key or a
value of the wrong type is an error naming the key; paths are relative to the config file's folder. Override
any key on the command line with \`--set KEY=VALUE\` (VALUE is JSON, or a plain string). On \`--resume\`, the keys
marked *fixed* keep the run's values (\`--resume --set\` refuses them, saying why); the others may change.
Editors that read JSON Schema complete and check the keys through \`"$schema": "./schema.json"\`
(\`configs/schema.json\`). Every key is optional except \`teacher\` and \`corpus\`; the defaults are the recipe's.
`;

/** One key: its heading, what it means, and a line of facts (default, allowed values, resume). */
function keySection(key: (typeof CONFIG_KEYS)[number]): string {
  const s = CONFIG_SPEC[key];
  const facts = [
    'default' in s ? `default \`${JSON.stringify(s.default)}\`` : 'required',
    `takes ${describe(s.schema)}`,
    s.fixedOnResume ? `*fixed* on resume: ${s.fixedOnResume}` : 'may change on `--resume --set`',
  ];
  return `### \`${key}\`\n\n${s.doc}\n\n${facts.join(' · ')}.\n`;
}

/** docs/config.md's text. */
export function configMarkdown(): string {
  return [HEADER, ...CONFIG_KEYS.map(keySection)].join('\n');
}
