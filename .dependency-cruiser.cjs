// The layers of distill, as rules (npx depcruise src teacher student losses corpus test --config
// .dependency-cruiser.cjs). Bottom up: src/core/ (errors, I/O, ONNX, model folders) ← the domain folders corpus/
// teacher/ student/ losses/ ← the app in src/ (CLI commands,
// the training loop and step, probes, benchmarks). Each rule says why.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'A cycle makes two modules one: neither can be read, tested or moved alone.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-orphans',
      severity: 'error',
      comment: 'A module nothing imports is dead code or a forgotten entry point (entry points are listed here).',
      from: {
        orphan: true,
        pathNot: [
          '\\.d\\.ts$',
          '^src/cli\\.ts$', // the CLI (package.json bin)
          '^src/index\\.ts$', // the library (package.json exports)
          '^src/bench/run\\.ts$', // npm run bench
          '^src/bench/prepare-child\\.ts$', // a benchmark's child process
          '^teacher/worker\\.ts$', // the teacher's worker thread, started by path
          '^src/parallel/mpi-binding\\.ts$', // imported dynamically under mpirun
          '^test/.*\\.test\\.ts$',
          '^test/fixtures/',
          '(^|/)\\.[^/]+\\.(c|m)?js$',
          '^vitest\\.config\\.ts$',
          '^eslint\\.config\\.js$',
        ],
      },
      to: {},
    },
    {
      name: 'core-is-the-bottom',
      severity: 'error',
      comment: 'src/core/ (errors, file formats, ONNX, model folders) serves every layer, so it imports none of them.',
      from: { path: '^src/core/' },
      to: { path: '^(src/(?!core/)|corpus/|teacher/|student/|losses/)' },
    },
    {
      name: 'domain-uses-only-core-from-src',
      severity: 'error',
      comment:
        'corpus/, teacher/, student/ and losses/ are libraries: ' +
        'from src/ they may use src/core/ only, never the app (CLI, loop, probes).',
      from: { path: '^(corpus|teacher|student|losses)/' },
      to: { path: '^src/(?!core/)' },
    },
    {
      name: 'corpus-is-text-only',
      severity: 'error',
      comment: 'corpus/ turns text into token batches and masks; it knows nothing of models or losses.',
      from: { path: '^corpus/' },
      to: { path: '^(teacher|student|losses)/' },
    },
    {
      name: 'teacher-stands-alone',
      severity: 'error',
      comment:
        'The teacher (ONNX) owns its outputs, soft targets included; it never depends on the student or the losses.',
      from: { path: '^teacher/' },
      to: { path: '^(student|losses)/' },
    },
    {
      name: 'student-not-losses',
      severity: 'error',
      comment: 'The student is a model; the losses read it, not the other way round.',
      from: { path: '^student/' },
      to: { path: '^(losses|teacher)/' },
    },
    {
      name: 'backend-packages-only-in-kernels',
      severity: 'error',
      comment:
        'Speed lives behind tfjs kernel names in student/kernels/: only it loads tfjs backends, Dawn, wabt or a BLAS ' +
        '(koffi; src/parallel binds MPI with it too).',
      from: {
        path: '^(src|teacher|student|losses|corpus)/',
        pathNot: '^(student/kernels/|student/backend\\.ts$|src/parallel/)',
      },
      to: {
        path: [
          '@tensorflow/tfjs-backend-',
          '@tensorflow/tfjs-node',
          'node_modules/webgpu/',
          'node_modules/wabt/',
          'node_modules/koffi/',
        ],
      },
    },
    {
      name: 'kernels-behind-the-backend',
      severity: 'error',
      comment:
        'The model, the losses, the loop and the commands call ops (student/ops/) and the backend ' +
        '(student/backend.ts); ' +
        'which kernels run is decided when the backend starts, so only student/backend.ts imports student/kernels/.',
      from: { path: '^(src|teacher|student|losses|corpus)/', pathNot: '^(student/kernels/|student/backend\\.ts$)' },
      to: { path: '^student/kernels/' },
    },
    {
      name: 'ops-apart-from-kernels',
      severity: 'error',
      comment:
        'An op (student/ops/) is a kernel name, its tfjs-op form and its gradient; ' +
        'the kernels import the op for its name, never the reverse.',
      from: { path: '^student/ops/' },
      to: { path: '^student/(kernels/|backend\\.ts$)' },
    },
    {
      name: 'losses-read-data-not-producers',
      severity: 'error',
      comment:
        "The losses take tensors and the teacher's soft targets (src/core/soft-targets.ts); they never import the " +
        'teacher or the corpus.',
      from: { path: '^losses/' },
      to: { path: '^(teacher|corpus)/' },
    },
    {
      name: 'tests-do-not-reach-into-node-internals',
      severity: 'error',
      comment:
        'Only the code under test is imported by tests, never another test file (shared helpers are plain modules).',
      from: { path: '^test/' },
      to: { path: '\\.test\\.ts$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
      extensions: ['.ts', '.js', '.json'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
