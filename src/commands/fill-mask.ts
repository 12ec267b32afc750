// distill fill-mask: rank the tokens a masked-LM puts at each [MASK].

import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { FileFormatError, InputError } from '../core/errors.js';
import { choiceOption, intOption } from '../options.js';
import { assertModelDir, isTfjsStudentFolder } from '../core/model-dir.js';
import {
  cardFormat,
  fillMask,
  scoresFormat,
  type FillMaskInput,
  type FillMaskResult,
  type MaskedLanguageModel,
} from '../../teacher/fill-mask.js';
import { WordPieceTokenizer } from '../../corpus/tokenizer.js';

interface FillMaskOptions {
  model: string;
  topK: number;
  text?: string[];
  input?: string;
  inputFormat: 'card' | 'jsonl';
  scores: boolean;
  batchSize: number;
  threads: number;
}

/** Inputs from the model card's JSON: {"inputs": {"input_string": ["...", ...]}} (a single string is accepted too). */
function readCardInputs(file: string): FillMaskInput[] {
  if (!existsSync(file)) throw new FileFormatError(file, 'no such file (given as --input)');
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new FileFormatError(
      file,
      `not valid JSON: ${(e as Error).message}`,
      'use {"inputs": {"input_string": ["Paris is the [MASK] of France."]}}, ' +
        'or --input-format jsonl for one {"text": ...} per line',
    );
  }
  const inputs = (doc as { inputs?: { input_string?: unknown } } | null)?.inputs?.input_string;
  const list = typeof inputs === 'string' ? [inputs] : inputs;
  if (!Array.isArray(list) || list.some((s) => typeof s !== 'string')) {
    throw new FileFormatError(
      file,
      'field "inputs.input_string" is missing or not a list of strings',
      'use {"inputs": {"input_string": ["Paris is the [MASK] of France."]}}',
    );
  }
  return (list as string[]).map((text, i) => ({ text, origin: `${file}: inputs.input_string[${i}]` }));
}

function format(result: FillMaskResult, scores: boolean): unknown {
  return scores ? scoresFormat(result) : cardFormat(result);
}

/** Stream a JSONL file, one {"text": ...} per line, writing one JSON result per line as batches finish. */
async function streamJsonl(model: MaskedLanguageModel, file: string, opts: FillMaskOptions): Promise<number> {
  if (!existsSync(file)) throw new FileFormatError(file, 'no such file (given as --input)');
  const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
  let pending: FillMaskInput[] = [];
  let count = 0;
  const flush = async (): Promise<void> => {
    const results = await fillMask(model, pending, opts.topK);
    process.stdout.write(results.map((r) => JSON.stringify(format(r, opts.scores))).join('\n') + '\n');
    count += pending.length;
    pending = [];
  };
  let lineNo = 0;
  for await (const line of lines) {
    lineNo++;
    if (line.trim() === '') continue;
    let text: unknown;
    try {
      text = (JSON.parse(line) as { text?: unknown }).text;
    } catch (e) {
      throw new FileFormatError(
        `${file}:${lineNo}`,
        `not valid JSON: ${(e as Error).message}`,
        'each line must be an object like {"text": "Paris is the [MASK] of France."}',
      );
    }
    if (typeof text !== 'string')
      throw new FileFormatError(`${file}:${lineNo}`, 'field "text" is missing or not a string');
    pending.push({ text, origin: `${file}:${lineNo}` });
    if (pending.length >= opts.batchSize) await flush();
  }
  if (pending.length) await flush();
  if (count === 0) throw new FileFormatError(file, 'no inputs (the file is empty)');
  return count;
}

/** A student folder without ONNX (init-student's output, a training checkpoint): the student run in tfjs. */
async function studentMaskedLM(dir: string): Promise<MaskedLanguageModel & { release(): Promise<void> }> {
  // tfjs and the student: loaded when a student runs, not for --help.
  const [tf, { selectBackend }, { loadStudent }] = await Promise.all([
    import('@tensorflow/tfjs'),
    import('../../student/backend.js'),
    import('../../student/io.js'),
  ]);
  await selectBackend(undefined);
  const student = loadStudent(dir);
  const tokenizer = WordPieceTokenizer.fromDir(dir);
  return {
    tokenizer,
    config: { maxPositions: student.config.max_position_embeddings, vocabSize: student.config.vocab_size },
    forward: async ({ inputIds, attentionMask, batchSize, seqLen }) => {
      const logits = tf.tidy(
        () =>
          student.forward(
            tf.tensor2d(inputIds, [batchSize, seqLen], 'int32'),
            tf.tensor2d(attentionMask, [batchSize, seqLen], 'int32'),
            { training: false },
          ).logits,
      );
      const values = Float32Array.from((await logits.data()) as Float32Array);
      logits.dispose();
      return { logits: values };
    },
    release: () => Promise.resolve(student.dispose()),
  };
}

export async function runFillMask(opts: FillMaskOptions): Promise<void> {
  if (!opts.text && !opts.input)
    throw new InputError('give --text "..." or --input FILE', 'e.g. --text "Paris is the [MASK] of France."');
  if (opts.text && opts.input) throw new InputError('give either --text or --input, not both');
  assertModelDir(opts.model, '--model');
  if (opts.input !== undefined && existsSync(opts.input) && statSync(opts.input).isDirectory()) {
    throw new FileFormatError(
      opts.input,
      'is a folder, not a file (given as --input)',
      'give the file of inputs: JSON as the model card has it, or JSONL with --input-format jsonl',
    );
  }
  const isStudentFolder = isTfjsStudentFolder(opts.model);
  if (isStudentFolder) {
    process.stderr.write(
      `${opts.model} holds a student without ONNX (a checkpoint or init-student's folder): running it with tfjs ` +
        `(distill export --student ${opts.model} --out DIR gives an ONNX folder onnxruntime runs faster)\n`,
    );
  }
  const model = isStudentFolder
    ? await studentMaskedLM(opts.model)
    : await (
        await import('../../teacher/teacher.js')
      ).Teacher.load(opts.model, { hiddenStates: 'none', threads: opts.threads, optionName: '--model' });
  try {
    if (opts.input && opts.inputFormat === 'jsonl') {
      await streamJsonl(model, opts.input, opts);
      return;
    }
    const inputs = opts.text
      ? opts.text.map((text, i) => ({ text, origin: opts.text!.length > 1 ? `--text #${i + 1}` : '--text' }))
      : readCardInputs(opts.input!);
    if (inputs.length === 0) throw new InputError(`${opts.input}: no inputs`);
    const out: unknown[] = [];
    for (let i = 0; i < inputs.length; i += opts.batchSize) {
      const results = await fillMask(model, inputs.slice(i, i + opts.batchSize), opts.topK);
      out.push(...results.map((r) => format(r, opts.scores)));
    }
    process.stdout.write(JSON.stringify(out, null, 1) + '\n');
  } finally {
    await model.release();
  }
}

export function registerFillMask(program: Command): void {
  program
    .command('fill-mask')
    .summary('rank the tokens a masked-LM puts at each [MASK]')
    .description(
      'Rank the tokens a masked-LM puts at each [MASK]: a teacher or an exported student (ONNX, onnxruntime), or a\n' +
        'student folder without ONNX, such as a training checkpoint (run with tfjs).\n' +
        'Prints a JSON array, one entry per input: {"0": best token, "1": next, ...} (one such object per mask\n' +
        'when an input has several). [MASK] and [mask] both work, for cased and uncased models.',
    )
    .requiredOption(
      '--model <dir>',
      "model folder: config.json, tokenizer.json or vocab.txt, and model.onnx (or a student's model.safetensors)",
    )
    .option('--text <text...>', 'one or more texts with [MASK] in them')
    .option(
      '--input <file>',
      'a file of inputs: the model card\'s {"inputs": {"input_string": [...]}} JSON, or JSONL (see --input-format)',
    )
    .option(
      '--input-format <format>',
      'card: the JSON above; jsonl: one {"text": ...} per line, streamed, results written line by line',
      choiceOption('--input-format', ['card', 'jsonl'] as const),
      'card',
    )
    .option('--top-k <k>', 'how many tokens to rank per mask', intOption('--top-k', 1), 5)
    .option(
      '--scores',
      'print [{token, token_id, score}] per mask instead of the card format (score = softmax probability)',
      false,
    )
    .option('--batch-size <n>', 'inputs per forward pass', intOption('--batch-size', 1, 4096), 32)
    .option('--threads <n>', 'onnxruntime CPU threads (0 = all cores)', intOption('--threads', 0, 1024), 0)
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  distill fill-mask --model teacher/tiny-bert-cased --text "A [MASK] whale."\n' +
        '  distill fill-mask --model DIR --input inputs.json --scores\n' +
        '  distill fill-mask --model DIR --input a.jsonl --input-format jsonl > b.jsonl',
    )
    .action(async (opts: FillMaskOptions) => {
      await runFillMask(opts);
    });
}
