// distill as a library: `import { train } from 'distill'`. What the CLI commands run, with their types; the
// README's "Use from TypeScript" shows a run (test/library.test.ts runs that very example).

export { train, type TrainOptions, type TrainSummary, type UpdateMetrics } from './train/loop.js';
export { loadConfig, DEFAULT_CONFIG, type TrainConfig } from './config.js';
export {
  prepareForModel as prepare,
  type PrepareForModelOptions as PrepareOptions,
} from '../corpus/prepare-for-model.js';
export { probe, type ProbeOptions } from './probe/run.js';
export type { ProbeReport } from './probe/report.js';
export { evaluateModel as evaluate, type EvalOptions, type EvalReport } from './eval/run.js';
export { exportStudent, type ExportOptions, type ExportSummary } from './export/run.js';
export { benchInference, type InferenceOptions } from './bench/inference.js';
export type { InferenceResult } from './bench/inference-result.js';
export { Teacher, type TeacherOptions, type TeacherOutput } from '../teacher/teacher.js';
export { fillMask, type FillMaskInput, type FillMaskResult } from '../teacher/fill-mask.js';
export { loadStudent, saveStudent } from '../student/io.js';
export type { DistilBertStudent } from '../student/model.js';
export { selectBackend, type BackendChoice } from '../student/backend.js';
export type { BackendName } from '../student/backend-names.js';
export { DistillError } from './core/errors.js';
