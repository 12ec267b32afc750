// Typed errors thrown by library code. The CLI's single handler (src/cli.ts) prints `message` and `hint`
// and sets the exit code; library code never calls process.exit.

export class DistillError extends Error {
  /** What the user can do about it, printed under the message. */
  readonly hint: string | undefined;
  constructor(message: string, hint?: string) {
    super(message);
    this.name = new.target.name;
    this.hint = hint;
  }
}

/** A file is missing, unreadable or malformed. The message names the file (and the field where one is at fault). */
export class FileFormatError extends DistillError {
  readonly file: string;
  constructor(file: string, message: string, hint?: string) {
    super(`${file}: ${message}`, hint);
    this.file = file;
  }
}

/** Two things that must agree do not (vocabulary sizes, shapes of tensors). */
export class MismatchError extends DistillError {}

/** Bad input from the user: an option value, a text without a mask, an input that is too long. */
export class InputError extends DistillError {}

/** Tensor shapes that do not fit the operation (checked before the maths). */
export class ShapeError extends DistillError {}

/** A command stopped by a signal (SIGINT, SIGTERM) after putting its work in order: the message says what was kept. */
export class StoppedError extends DistillError {
  readonly signal: NodeJS.Signals;
  constructor(signal: NodeJS.Signals, message: string, hint?: string) {
    super(message, hint);
    this.signal = signal;
  }
}
