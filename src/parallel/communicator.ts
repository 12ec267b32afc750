// How the ranks of a run talk: MPI when launched by mpirun (src/mpi-binding.ts), alone otherwise (SOLO).

/** A process group: every rank calls each collective in the same order. */
export interface Communicator {
  rank: number;
  size: number;
  /** Sum in place across ranks. */
  allreduceSum(data: Float32Array | Float64Array): Promise<void>;
  /** Rank 0's values to every rank, in place. */
  broadcast(data: Float32Array): Promise<void>;
}

/** One process alone: the collectives leave the data as it is. */
export const SOLO: Communicator = { rank: 0, size: 1, allreduceSum: async () => undefined, broadcast: async () => undefined };
