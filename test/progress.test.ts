import { describe, expect, it } from 'vitest';
import { Eta, formatDuration } from '../src/progress.js';

describe('the ETA of `distill train`', () => {
  it('is unknown until a second update is timed, then paced on the updates after the first', () => {
    const eta = new Eta();
    // Update 1 ends at 10 s (its warm-up is not a sample of the pace): unknown, not "0m00s".
    expect(eta.update(1, 60, 10_000)).toBe('?');
    // Updates 2..6 take 1 s each: 54 left at 1 s = 54 s.
    expect(eta.update(6, 60, 15_000)).toBe('0m54s');
    // Updates 7..21 at 2 s each pull the pace to (35 s / 20) = 1.75 s: 39 left, 68.25 s.
    expect(eta.update(21, 60, 45_000)).toBe('1m08s');
    expect(eta.update(60, 60, 123_000)).toBe('0m00s');
  });

  it('starts from the first update seen on a resumed run', () => {
    const eta = new Eta();
    expect(eta.update(41, 60, 0)).toBe('?');
    expect(eta.update(41, 60, 5_000)).toBe('?'); // no update timed yet
    expect(eta.update(43, 60, 3_000)).toBe('0m25s'); // 1.5 s an update, 17 left
  });

  it('formats hours and minutes', () => {
    expect(formatDuration(59.9)).toBe('0m59s');
    expect(formatDuration(3 * 3600 + 7 * 60 + 5)).toBe('3h07m');
    expect(formatDuration(Number.NaN)).toBe('?');
  });
});
