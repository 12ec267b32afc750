// eslint with typescript-eslint (npm run lint): the type-checked rules on the sources (src/, teacher/,
// student/, losses/, corpus/) and on the tests, which are type-checked with tsconfig.test.json (the sources'
// settings, no output); the width of every line, everywhere. Prettier formats the code (npm run format); it
// leaves comments and strings as they are, so max-len holds them to the same 120 columns.
import tseslint from 'typescript-eslint';

const SOURCES = ['src/**/*.ts', 'teacher/**/*.ts', 'student/**/*.ts', 'losses/**/*.ts', 'corpus/**/*.ts'];
const TESTS = ['test/**/*.ts'];

export default tseslint.config(
  {
    ignores: ['dist/', 'node_modules/', 'runs/', '.tmp/', '.tmp-*/', '.device-pack/', 'test/fixtures/'],
  },
  {
    // Every file: 120 columns. A regular expression may be wider (a test's expected message, which reads best
    // whole), and so may a URL.
    files: ['**/*.ts', '**/*.js', '**/*.cjs'],
    languageOptions: { parser: tseslint.parser },
    rules: { 'max-len': ['error', { code: 120, ignoreUrls: true, ignoreRegExpLiterals: true }] },
  },
  {
    files: SOURCES,
    extends: [...tseslint.configs.recommendedTypeChecked],
    languageOptions: { parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname } },
  },
  {
    files: TESTS,
    extends: [...tseslint.configs.recommendedTypeChecked],
    languageOptions: { parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname } },
  },
  {
    files: [...SOURCES, ...TESTS],
    rules: {
      // Module boundaries: no `any` crossing them, and unused code is an error.
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    files: [...SOURCES, ...TESTS],
    rules: {
      // A promise must be awaited or explicitly voided (a forgotten await loses an error).
      '@typescript-eslint/no-floating-promises': 'error',
      // Shapes ([B, T, H]) are printed in messages: arrays and numbers read well there.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowArray: true }],
      // tfjs's ops return loosely ranked tensors; the code states each rank where shapes change (`as tf.Tensor2D`
      // beside a `// [B, T, H]` comment) rather than as type arguments, which this rule would require.
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
    },
  },
  {
    // A function short enough to see whole: 150 lines at most in the sources (a test's describe block may be
    // longer: it is a list of cases).
    files: SOURCES,
    rules: {
      'max-lines-per-function': ['error', { max: 150, skipComments: false, skipBlankLines: false, IIFEs: true }],
    },
  },
  {
    // Untyped foreign interfaces: @huggingface/tokenizers' declarations do not resolve under NodeNext, koffi's
    // functions are declared from C prototypes at run time, onnx-proto's Long fields are loosely typed. Each is
    // wrapped in one module that gives the rest of the code typed values.
    files: ['corpus/tokenizer.ts', 'src/parallel/mpi-binding.ts', 'src/core/onnx.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
    },
  },
);
