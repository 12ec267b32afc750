// The process group of a run: alone, unless started by mpirun (OMPI_COMM_WORLD_SIZE > 1), in which case MPI
// is bound through koffi (see the data-parallel section of the README).

import type { Communicator } from './train.js';

export interface World extends Communicator {
  finalize?: () => void;
}

let world: World | undefined;

export async function worldFromEnvironment(): Promise<World> {
  if (world) return world;
  const size = Number(process.env['OMPI_COMM_WORLD_SIZE'] ?? process.env['PMI_SIZE'] ?? '1');
  if (!(size > 1)) {
    world = { rank: 0, size: 1, allreduceSum: async () => undefined, broadcast: async () => undefined };
    return world;
  }
  const { openMpiWorld } = await import('./mpi-binding.js');
  world = openMpiWorld();
  return world;
}
