// The process group of a run: alone, unless started by mpirun (OMPI_COMM_WORLD_SIZE > 1), in which case MPI
// is bound through koffi (docs/parallel.md).

import { SOLO, type World } from './communicator.js';

let world: World | undefined;

/**
 * One GPU per rank on a node: the local rank picks its GPU by CUDA_VISIBLE_DEVICES, which tfjs-node-gpu
 * and onnxruntime's CUDA provider read when they load (so this runs before any backend starts). A list the
 * user set is indexed by the local rank; unset, the local rank itself is the device. The chosen device is
 * then device 0 of this process. Returns the local rank.
 */
export function placeDevicePerRank(env: NodeJS.ProcessEnv = process.env): number {
  const local = Number(env['OMPI_COMM_WORLD_LOCAL_RANK'] ?? env['MPI_LOCALRANKID'] ?? '0');
  const size = Number(env['OMPI_COMM_WORLD_LOCAL_SIZE'] ?? '1');
  if (!(size > 1)) return local;
  const visible = env['CUDA_VISIBLE_DEVICES'];
  const devices = visible
    ? visible
        .split(',')
        .map((d) => d.trim())
        .filter((d) => d.length > 0)
    : undefined;
  env['CUDA_VISIBLE_DEVICES'] = devices ? devices[local % devices.length]! : String(local);
  return local;
}

export async function worldFromEnvironment(): Promise<World> {
  if (world) return world;
  const size = Number(process.env['OMPI_COMM_WORLD_SIZE'] ?? process.env['PMI_SIZE'] ?? '1');
  if (!(size > 1)) {
    world = SOLO;
    return world;
  }
  placeDevicePerRank();
  const { openMpiWorld } = await import('./mpi-binding.js');
  world = openMpiWorld();
  return world;
}
