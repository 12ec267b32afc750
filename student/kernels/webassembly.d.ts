// The parts of the WebAssembly JS API this project uses (TypeScript declares it only in its DOM library,
// which a Node project does not load).
export {};
declare global {
  namespace WebAssembly {
    interface MemoryDescriptor {
      initial: number;
      maximum?: number;
      shared?: boolean;
    }
    class Memory {
      constructor(descriptor: MemoryDescriptor);
      readonly buffer: ArrayBuffer;
      grow(delta: number): number;
    }
    interface Instance {
      readonly exports: Record<string, unknown>;
    }
    function instantiate(
      bytes: ArrayBufferView | ArrayBuffer,
      imports?: Record<string, Record<string, unknown>>,
    ): Promise<{ instance: Instance }>;
  }
}
