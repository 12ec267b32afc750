// Option parsers for commander: each checks one option once, at parse time, and throws an InputError that
// names the option and says what it takes. Commands then receive typed values.

import { InputError } from './core/errors.js';

export function intOption(flag: string, min: number, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InputError(
        `${flag} ${JSON.stringify(value)}: expected a whole number from ` +
          `${min}${max === Number.MAX_SAFE_INTEGER ? ' up' : ` to ${max}`}`,
      );
    }
    return n;
  };
}

export function floatOption(flag: string, min = -Infinity, max = Infinity): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      const range = min === -Infinity && max === Infinity ? '' : ` in [${min}, ${max}]`;
      throw new InputError(`${flag} ${JSON.stringify(value)}: expected a number${range}`);
    }
    return n;
  };
}

export function choiceOption<T extends string>(flag: string, choices: readonly T[]): (value: string) => T {
  return (value: string) => {
    if (!(choices as readonly string[]).includes(value)) {
      throw new InputError(`${flag} ${JSON.stringify(value)}: expected one of ${choices.join(', ')}`);
    }
    return value as T;
  };
}

/** A comma-separated list of whole numbers, e.g. "0,2,4,7,9,11". */
export function intListOption(flag: string): (value: string) => number[] {
  return (value: string) => {
    const parts = value.split(',').map((s) => s.trim());
    if (parts.some((p) => !/^\d+$/.test(p))) {
      throw new InputError(`${flag} ${JSON.stringify(value)}: expected whole numbers separated by commas, e.g. 0,2,4`);
    }
    return parts.map(Number);
  };
}
