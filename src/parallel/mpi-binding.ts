// OpenMPI through koffi (an FFI): MPI_Init, rank and size of MPI_COMM_WORLD, Allreduce (sum) and Bcast of
// float buffers, Finalize. OpenMPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM) are the addresses of its
// global objects, which koffi's lib.symbol() gives. Only loaded under mpirun: MPI is never required.
//
// A rank that dies makes mpirun stop the job. A rank that hangs would block its peers inside MPI for ever:
// each collective runs on a koffi worker thread under a watchdog, and a collective that has not returned
// after DISTILL_MPI_TIMEOUT_S seconds (default 600) ends this process with an error, which mpirun turns into
// the end of the whole job. The last checkpoint stays intact (checkpoints are written by rename).

import koffi from 'koffi';
import { DistillError } from '../core/errors.js';
import type { World } from './communicator.js';

type Fn = ((...args: unknown[]) => number) & { async: (...args: unknown[]) => void };

export function openMpiWorld(): World {
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load('libmpi.so.40');
  } catch (e) {
    throw new DistillError(
      `started under mpirun, but libmpi.so.40 cannot be loaded (${(e as Error).message})`,
      'install OpenMPI: apt-get install -y openmpi-bin libopenmpi-dev',
    );
  }
  const init = lib.func('int MPI_Init(void *argc, void *argv)') as Fn;
  const commRank = lib.func('int MPI_Comm_rank(void *comm, _Out_ int *rank)') as Fn;
  const commSize = lib.func('int MPI_Comm_size(void *comm, _Out_ int *size)') as Fn;
  const allreduce = lib.func(
    'int MPI_Allreduce(void *sendbuf, void *recvbuf, int count, void *datatype, void *op, void *comm)',
  ) as Fn;
  const bcast = lib.func('int MPI_Bcast(void *buf, int count, void *datatype, int root, void *comm)') as Fn;
  const finalize = lib.func('int MPI_Finalize()') as Fn;
  const abort = lib.func('int MPI_Abort(void *comm, int errorcode)') as Fn;
  const COMM_WORLD = lib.symbol('ompi_mpi_comm_world');
  const FLOAT = lib.symbol('ompi_mpi_float');
  const DOUBLE = lib.symbol('ompi_mpi_double');
  const SUM = lib.symbol('ompi_mpi_op_sum');

  const check = (what: string, rc: number): void => {
    if (rc !== 0) throw new DistillError(`${what} failed with MPI error ${rc}`);
  };
  check('MPI_Init', init(null, null));
  const r = [0];
  const s = [0];
  check('MPI_Comm_rank', commRank(COMM_WORLD, r));
  check('MPI_Comm_size', commSize(COMM_WORLD, s));
  const rank = r[0]!;
  const size = s[0]!;
  const timeoutS = Number(process.env['DISTILL_MPI_TIMEOUT_S'] ?? '600');

  /** Run a collective on a koffi worker thread; a watchdog ends the process if it never returns. */
  const collective = (what: string, fn: Fn, args: unknown[]): Promise<void> =>
    new Promise((resolvePromise, rejectPromise) => {
      const watchdog = setTimeout(() => {
        process.stderr.write(
          `error: rank ${rank}: ${what} did not complete within ${timeoutS} s: ` +
            `another rank died or hangs; stopping the job\n`,
        );
        abort(COMM_WORLD, 1);
        process.exit(1);
      }, timeoutS * 1000);
      fn.async(...args, (err: unknown, rc: number) => {
        clearTimeout(watchdog);
        if (err)
          rejectPromise(
            new DistillError(`${what} failed: ${err instanceof Error ? err.message : JSON.stringify(err)}`),
          );
        else if (rc !== 0) rejectPromise(new DistillError(`${what} failed with MPI error ${rc}`));
        else resolvePromise();
      });
    });

  return {
    rank,
    size,
    async allreduceSum(data: Float32Array | Float64Array): Promise<void> {
      const send = data.slice();
      await collective('MPI_Allreduce', allreduce, [
        send,
        data,
        data.length,
        data instanceof Float32Array ? FLOAT : DOUBLE,
        SUM,
        COMM_WORLD,
      ]);
    },
    async broadcast(data: Float32Array): Promise<void> {
      await collective('MPI_Bcast', bcast, [data, data.length, FLOAT, 0, COMM_WORLD]);
    },
    finalize(): void {
      finalize();
    },
  };
}
