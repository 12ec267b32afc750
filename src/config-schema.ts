// npm run schema: write the config's two generated descriptions from CONFIG_SPEC: configs/schema.json (JSON Schema,
// for editors and tools) and docs/config.md (for people). test/config.test.ts and test/docs.test.ts check both.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configJsonSchema } from './config.js';
import { configMarkdown } from './config-docs.js';
import { writeFileAtomic } from './core/out.js';

// dist/src/config-schema.js → the repository.
const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

writeFileAtomic(join(REPO_ROOT, 'configs', 'schema.json'), JSON.stringify(configJsonSchema(), null, 1) + '\n');
writeFileAtomic(join(REPO_ROOT, 'docs', 'config.md'), configMarkdown());
process.stdout.write('wrote configs/schema.json and docs/config.md\n');
