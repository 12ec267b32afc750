// How validation batches its sequences, the same in `train` and `distill eval` (the batches and their masks
// depend on both values). Apart from data.ts, which reads the corpus (Apache Arrow): the CLI's option defaults
// read these without loading it.

/** Sequences per validation batch. */
export const EVAL_BATCH_SIZE = 16;
/**
 * Length bucket of the validation batching: a batch takes sequences whose lengths, divided by this, round down alike.
 */
export const EVAL_BUCKET_WIDTH = 4;
