// The label that means "no target here", as everywhere in the reference code (PyTorch's ignore_index): the MLM
// labels of every position that was not chosen for masking.
export const IGNORE_INDEX = -100;
