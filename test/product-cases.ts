// Every product shape and transpose the student uses (and a few more), for the tests of each product kernel.
export const PRODUCT_CASES: { name: string; a: number[]; b: number[]; ta: boolean; tb: boolean }[] = [
  { name: '2-D', a: [7, 3], b: [3, 4], ta: false, tb: false },
  { name: '2-D, a transposed', a: [3, 7], b: [3, 4], ta: true, tb: false },
  { name: '2-D, b transposed', a: [7, 3], b: [4, 3], ta: false, tb: true },
  { name: '2-D, both transposed', a: [3, 7], b: [4, 3], ta: true, tb: true },
  { name: 'batched 3-D', a: [5, 7, 3], b: [5, 3, 4], ta: false, tb: false },
  { name: 'batched, b transposed (attention scores)', a: [6, 9, 5], b: [6, 9, 5], ta: false, tb: true },
  { name: 'batch of one broadcast against a batch', a: [1, 7, 3], b: [5, 3, 4], ta: false, tb: false },
  { name: '2-D weight against a batch', a: [5, 7, 3], b: [3, 4], ta: false, tb: false },
  { name: 'rank 4', a: [2, 3, 7, 3], b: [2, 3, 4, 3], ta: false, tb: true },
  { name: 'projector-sized, a transposed', a: [64, 96], b: [64, 40], ta: true, tb: false },
];
