// npm run schema: print the JSON Schema of a run config (configs/schema.json), generated from CONFIG_SPEC.
import { configJsonSchema } from './config.js';

process.stdout.write(JSON.stringify(configJsonSchema(), null, 1) + '\n');
