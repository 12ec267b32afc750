// SIGINT (Ctrl-C) and SIGTERM (a scheduler, a container's stop, kill) for every command. A command with work to put
// in order (train checkpoints its update, prepare keeps its complete shards) asks to hear the first signal
// (onStopRequest) and stops in its own time; any other command, or a second signal, ends the process at once, after
// removing what it was writing (src/core/out.ts), so that nothing half-written is left. A shell shows 130 for SIGINT
// and 143 for SIGTERM: train exits with that code after its checkpoint; the other stops end the process by the signal
// itself (dieBy), as POSIX asks of a program that stops on a signal, and because an exit could wait forever on a read
// still blocked in a worker thread (a named pipe nobody writes to).
//
// Started by npx or an npm script, distill runs under `sh -c` under npm: npm passes a signal on to the shell, which
// ends without passing it on, and distill would run on alone (its parent gone). So under npm, distill watches its
// parent: when the shell is gone, it acts as on SIGTERM.

import { removeTempsInProgress } from './core/out.js';

type StopHandler = (signal: NodeJS.Signals) => void;

let stopHandler: StopHandler | undefined;
let stopping = false;

export function exitCodeOf(signal: NodeJS.Signals): number {
  return signal === 'SIGINT' ? 130 : 143;
}

function onSignal(signal: NodeJS.Signals): void {
  if (stopHandler && !stopping) {
    stopping = true;
    stopHandler(signal);
    return;
  }
  removeTempsInProgress();
  process.stderr.write(`${signal}: stopped${stopping ? ' at once' : ''}; nothing half-written was left\n`);
  dieBy(signal);
}

/** End the process by `signal` itself (its default action), at once, whatever threads are doing. */
export function dieBy(signal: NodeJS.Signals): never {
  process.removeAllListeners('SIGINT');
  process.removeAllListeners('SIGTERM');
  process.kill(process.pid, signal);
  process.exit(exitCodeOf(signal)); // not reached: the default action of SIGINT and SIGTERM ends the process
}

/** Install the handlers (once, when the CLI starts), and the parent watch under npm. */
export function installSignalHandlers(): void {
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  if (process.env['npm_command'] !== undefined) watchParent();
}

/**
 * Hear the first SIGINT/SIGTERM (the handler says what will happen and sets the command's stop flag); a second one
 * ends the process at once. Returns the function that gives the signals back to the default.
 */
export function onStopRequest(handler: StopHandler): () => void {
  stopHandler = handler;
  stopping = false;
  return () => {
    if (stopHandler === handler) stopHandler = undefined;
  };
}

/** Under npm (npx, npm run): when the process that started distill is gone, stop as on SIGTERM. */
function watchParent(): void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    process.stderr.write(`the process that started distill (${parent}, under npm) has ended: stopping as on SIGTERM\n`);
    onSignal('SIGTERM');
  }, 500);
  timer.unref();
}
