// Worker threads are started from a script's path, which must be compiled JavaScript: beside the starting module when
// it runs from dist/, else under dist/ (the tests run the TypeScript sources, after npm run build).

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { DistillError } from './errors.js';

/**
 * `folder/file` (e.g. teacher/worker.js) for the module at `callerUrl` (its import.meta.url), which lives in `folder`.
 */
export function compiledWorkerScript(callerUrl: string, folder: string, file: string): string {
  const here = dirname(fileURLToPath(callerUrl));
  const beside = join(here, file);
  if (existsSync(beside)) return beside;
  const built = join(here, '..', 'dist', folder, file);
  if (existsSync(built)) return built;
  throw new DistillError(
    `the worker script ${folder}/${file} is missing (dist/${folder}/${file})`,
    'build the project: npm run build',
  );
}
