// distill plot: an SVG of a run's loss curves.

import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { InputError } from '../core/errors.js';
import { writeFileAtomic } from '../core/safetensors.js';
import { lossChartSvg, readMetrics } from '../plot.js';

export function registerPlot(program: Command): void {
  program
    .command('plot')
    .summary('draw the loss curves of a run as SVG')
    .description('Draw the loss curves of a run (RUN_DIR/metrics.jsonl) as an SVG file to open in a browser.')
    .argument('<run_dir>', 'the run folder (distill train --out)')
    .option('--out <file>', 'where to write the SVG (default: RUN_DIR/losses.svg)')
    .action((runDir: string, opts: { out?: string }) => {
      const metrics = readMetrics(runDir);
      if (metrics.length === 0) throw new InputError(`${join(runDir, 'metrics.jsonl')} has no updates yet`);
      const out = opts.out ?? join(runDir, 'losses.svg');
      writeFileAtomic(out, lossChartSvg(metrics, `distill: ${resolve(runDir)} (${metrics.length} updates)`));
      process.stdout.write(`${out}\n`);
    });
}
