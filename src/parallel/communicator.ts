// How the ranks of a run talk: MPI when launched by mpirun (src/parallel/mpi-binding.ts), alone otherwise (SOLO).

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
export const SOLO: Communicator = {
  rank: 0,
  size: 1,
  allreduceSum: () => Promise.resolve(),
  broadcast: () => Promise.resolve(),
};

/** The process group of a whole run: a communicator that may need closing (MPI_Finalize) at the end. */
export interface World extends Communicator {
  finalize?: () => void;
}
