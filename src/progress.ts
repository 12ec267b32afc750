// Progress on long work: a bar redrawn in place on a terminal, plain lines now and then otherwise
// (logs, CI), so that output piped to a file stays readable.

export interface ProgressLine {
  /** 0..1 when the total is known. */
  fraction?: number;
  /** The figures after the bar, e.g. "12.3 MB/s  1.2M tok/s". */
  text: string;
}

export class ProgressReporter {
  private readonly stream: NodeJS.WriteStream;
  private readonly label: string;
  private readonly plainEveryMs: number;
  private lastPlain = 0;
  private drawn = false;

  constructor(label: string, stream: NodeJS.WriteStream = process.stderr, plainEveryMs = 10_000) {
    this.label = label;
    this.stream = stream;
    this.plainEveryMs = plainEveryMs;
  }

  get isTerminal(): boolean {
    return Boolean(this.stream.isTTY);
  }

  update(p: ProgressLine): void {
    if (this.isTerminal) {
      const width = 24;
      const bar =
        p.fraction === undefined
          ? ''
          : (() => {
              const filled = Math.round(Math.min(1, Math.max(0, p.fraction)) * width);
              return (
                `▕${'█'.repeat(filled)}${'░'.repeat(width - filled)}▏ ` +
                `${(p.fraction * 100).toFixed(0).padStart(3)}% `
              );
            })();
      this.stream.write(`\r\x1b[2K${this.label} ${bar}${p.text}`);
      this.drawn = true;
    } else if (Date.now() - this.lastPlain >= this.plainEveryMs) {
      this.lastPlain = Date.now();
      const pct = p.fraction === undefined ? '' : `${(p.fraction * 100).toFixed(1)}% `;
      this.stream.write(`${this.label}: ${pct}${p.text}\n`);
    }
  }

  /** End the bar (a newline on a terminal). */
  done(): void {
    if (this.drawn) this.stream.write('\n');
    this.drawn = false;
  }
}

/**
 * Time left on work counted in units (updates), from the pace since the first unit reported: that unit's own time
 * (the backend's warm-up, the first teacher batch) is not a fair sample of the rest, so the clock starts when it
 * ends, and the estimate is unknown ('?') until a second unit has been timed.
 */
export class Eta {
  private start: { ms: number; done: number } | undefined;

  /** `done` of `total` units finished at `nowMs`: the time left, e.g. "1m05s", "2h03m", or "?". */
  update(done: number, total: number, nowMs = performance.now()): string {
    if (!this.start) {
      this.start = { ms: nowMs, done };
      return '?';
    }
    const timed = done - this.start.done;
    if (timed <= 0) return '?';
    return formatDuration(((nowMs - this.start.ms) / 1000 / timed) * Math.max(0, total - done));
  }
}

/** Seconds as "MmSSs", or "HhMMm" from an hour on. */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(sec).padStart(2, '0')}s`;
}

export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}
