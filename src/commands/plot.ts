// distill plot: an SVG of a run's loss curves.

import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { InputError } from '../core/errors.js';
import { writeFileAtomic } from '../core/out.js';
import { isDistillPlot, lossChartSvg, readMetrics } from '../plot.js';
import { checkOutputFile } from '../core/folders.js';

export function registerPlot(program: Command): void {
  program
    .command('plot')
    .summary('draw the loss curves of a run as SVG')
    .description('Draw the loss curves of a run (RUN_DIR/metrics.jsonl) as an SVG file to open in a browser.')
    .argument('<run_dir>', 'the run folder (distill train --out)')
    .option(
      '--out <file>',
      'where to write the SVG (default: RUN_DIR/losses.svg, redrawn each time); a file outside the run folder',
    )
    .option('--force', 'replace the SVG at --out that an earlier plot wrote (any other file is refused)', false)
    .action((runDir: string, opts: { out?: string; force: boolean }) => {
      const own = join(runDir, 'losses.svg');
      const out = opts.out ?? own;
      // The run's own losses.svg is redrawn freely (when plot drew it); any other --out is a file apart from the run.
      const insideOwn = resolve(out) === resolve(own);
      checkOutputFile(
        { path: out, option: '--out' },
        opts.force,
        [{ path: runDir, option: 'RUN_DIR' }],
        isDistillPlot,
        insideOwn,
      );
      const metrics = readMetrics(runDir);
      if (metrics.length === 0)
        throw new InputError(
          `${join(runDir, 'metrics.jsonl')} has no updates yet`,
          `plot again once the run has done an update`,
        );
      writeFileAtomic(out, lossChartSvg(metrics, `distill: ${resolve(runDir)} (${metrics.length} updates)`));
      process.stdout.write(`${out}\n`);
    });
}
