// distill export: a student as a Hugging Face model folder, the layout transformers.js and Python's transformers
// load as written:
//   OUT/onnx/model.onnx            the student in ONNX (logits, hidden_states.0…L, last_hidden_state)
//   OUT/onnx/model_quantized.onnx  with --quantize int8: the products' weights in int8 (transformers.js dtype 'q8')
//   OUT/model.safetensors          DistilBertForMaskedLM's weights by transformers' names; OUT/config.json
//   OUT/tokenizer.json             with BERT's post-processor ([CLS] $A [SEP]), written in where the teacher's lacks it
//   OUT/vocab.txt, tokenizer_config.json, special_tokens_map.json
//   OUT/README.md                  the model card: measured numbers only (src/export/model-card.ts)

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileFormatError } from '../core/errors.js';
import { assertModelDir } from '../core/model-dir.js';
import { SafetensorsFile } from '../core/safetensors.js';
import { makeDir, writeFileAtomic } from '../core/out.js';
import { writeOutputFolder, type NamedPath } from '../core/folders.js';
import { modelParameters } from '../core/parameters.js';
import { readStudentConfig, type StudentConfig } from '../../student/config.js';
import { WordPieceTokenizer } from '../../corpus/tokenizer.js';
import { cardFacts, modelCard, type CardInputs } from './model-card.js';

export interface ExportOptions extends CardInputs {
  /** A student folder: init-student's output or a checkpoint. */
  student: string;
  /** The new folder. */
  out: string;
  /** Replace an earlier export at `out` (moved aside, never deleted). */
  force?: boolean;
  /** 'int8': also onnx/model_quantized.onnx. */
  quantize?: 'int8';
}

export interface ExportSummary {
  out: string;
  /** Bytes of onnx/model.onnx. */
  bytes: number;
  /** Bytes of onnx/model_quantized.onnx (--quantize int8). */
  quantized_bytes?: number;
  parameters: number;
  /** The student's tokenizer.json had no post-processor: BERT's was written into the export's. */
  tokenizer_post_processor_added: boolean;
  moved_aside?: string;
}

/** Export `opts.student` to `opts.out` (a new folder, published whole or not at all). */
export async function exportStudent(opts: ExportOptions): Promise<ExportSummary> {
  assertModelDir(opts.student, '--student');
  const config = readStudentConfig(opts.student);
  const path = join(opts.student, 'model.safetensors');
  if (!existsSync(path))
    throw new FileFormatError(
      path,
      'missing',
      'a student folder holds model.safetensors (init-student or a checkpoint)',
    );
  const tokenizer = WordPieceTokenizer.fromDir(opts.student);
  // The card's inputs are read now: a wrong --probe-report or --bench-report fails before any work.
  const facts = cardFacts(opts);
  const inputs: NamedPath[] = [
    { path: opts.student, option: '--student' },
    ...(facts.teacherDir ? [{ path: facts.teacherDir, option: '--teacher' }] : []),
    ...(opts.probeReport ? [{ path: opts.probeReport, option: '--probe-report' }] : []),
    ...(opts.benchReport ? [{ path: opts.benchReport, option: '--bench-report' }] : []),
    ...(opts.evalReports ?? []).map((p) => ({ path: p, option: '--eval-report' })),
  ];
  // A folder with files is never overwritten in place: a stale model-hidden.onnx left there would be preferred
  // over the new graph by --teacher. Checked before any work.
  return writeOutputFolder({ path: opts.out, option: '--out' }, 'export', opts.force ?? false, inputs, async (dir) => {
    // The student's modules bring tfjs: loaded once the input has been checked, not for --help or a bad path.
    const [{ studentParamSpecs }, { finiteWeight, writeStudentFolder }, { studentToOnnx }] = await Promise.all([
      import('../../student/model.js'),
      import('../../student/io.js'),
      import('../../student/export-onnx.js'),
    ]);
    const file = SafetensorsFile.read(path);
    // The model only: a training-time projection (distill_projection.safetensors) stays behind.
    const exported: StudentConfig = { ...config };
    delete exported.projection_dim;
    const weights = new Map(
      studentParamSpecs(config)
        .filter((s) => !s.aux)
        .map((s) => [s.name, finiteWeight(file, s.name, s.hfShape)]),
    );
    makeDir(join(dir, 'onnx'));
    const bytes = studentToOnnx(exported, weights);
    writeFileAtomic(join(dir, 'onnx', 'model.onnx'), bytes);
    const quantized = opts.quantize === 'int8' ? studentToOnnx(exported, weights, true) : undefined;
    if (quantized) writeFileAtomic(join(dir, 'onnx', 'model_quantized.onnx'), quantized);
    writeStudentFolder(exported, weights, dir);
    const postProcessorAdded = writeTokenizerFiles(tokenizer, dir);
    const parameters = [...weights.values()].reduce((n, w) => n + w.length, 0);
    const card = modelCard(facts, {
      name: opts.out,
      parameters,
      teacherParameters: facts.teacherDir ? modelParameters(facts.teacherDir) : undefined,
      onnxBytes: bytes.byteLength,
      quantizedBytes: quantized?.byteLength,
    });
    writeFileAtomic(join(dir, 'README.md'), card);
    return {
      out: opts.out,
      bytes: bytes.byteLength,
      ...(quantized ? { quantized_bytes: quantized.byteLength } : {}),
      parameters,
      tokenizer_post_processor_added: postProcessorAdded,
    };
  });
}

/**
 * The tokenizer as Hugging Face's clients read it: tokenizer.json (with BERT's post-processor), vocab.txt,
 * tokenizer_config.json and special_tokens_map.json (the student's own where it has them). Returns whether the
 * post-processor was added.
 */
function writeTokenizerFiles(tok: WordPieceTokenizer, dir: string): boolean {
  const { json, postProcessorAdded } = tok.tokenizerJson();
  writeFileAtomic(join(dir, 'tokenizer.json'), JSON.stringify(json, null, 2) + '\n');
  const from = (f: string): string | undefined => (existsSync(join(tok.dir, f)) ? join(tok.dir, f) : undefined);
  const vocab = from('vocab.txt');
  writeFileAtomic(
    join(dir, 'vocab.txt'),
    vocab ? readFileSync(vocab) : Array.from({ length: tok.vocabSize }, (_, i) => tok.idToToken(i) + '\n').join(''),
  );
  const special = {
    unk_token: tok.special.unk,
    sep_token: tok.special.sep,
    pad_token: tok.special.pad,
    cls_token: tok.special.cls,
    mask_token: tok.special.mask,
  };
  const config = from('tokenizer_config.json');
  writeFileAtomic(
    join(dir, 'tokenizer_config.json'),
    config
      ? readFileSync(config)
      : JSON.stringify(
          {
            tokenizer_class: 'BertTokenizer',
            do_lower_case: tok.info.lowercase,
            strip_accents: tok.info.stripAccents ? null : false,
            ...special,
          },
          null,
          2,
        ) + '\n',
  );
  const map = from('special_tokens_map.json');
  writeFileAtomic(
    join(dir, 'special_tokens_map.json'),
    map ? readFileSync(map) : JSON.stringify(special, null, 2) + '\n',
  );
  return postProcessorAdded;
}
