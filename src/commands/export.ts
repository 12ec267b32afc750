// distill export: a student as a Hugging Face model folder (src/export/run.ts), with its model card.

import type { Command } from 'commander';
import { choiceOption } from '../options.js';
import { exportStudent } from '../export/run.js';

interface ExportCommandOptions {
  student: string;
  format: 'onnx';
  out: string;
  force: boolean;
  quantize?: 'int8';
  teacher?: string;
  probeReport?: string;
  benchReport?: string;
  evalReport?: string[];
  license?: string;
}

export function registerExport(program: Command): void {
  program
    .command('export')
    .summary('export a student for transformers.js and transformers (ONNX, safetensors, model card)')
    .description(
      'Export a student (init-student output or a checkpoint) as a Hugging Face model folder that transformers.js\n' +
        "and Python's transformers load as written: onnx/model.onnx (inputs input_ids, attention_mask; outputs\n" +
        'logits, hidden_states.0…L, last_hidden_state), model.safetensors + config.json (DistilBertForMaskedLM),\n' +
        "tokenizer.json with BERT's post-processor, vocab.txt, tokenizer_config.json, special_tokens_map.json, and\n" +
        'README.md, a model card with measured numbers only. The folder also works as --model for fill-mask and\n' +
        'eval, and as --teacher.',
    )
    .requiredOption('--student <dir>', 'student folder (config.json + model.safetensors)')
    .option('--format <format>', 'export format', choiceOption('--format', ['onnx'] as const), 'onnx')
    .requiredOption('--out <dir>', 'output folder (new or empty)')
    .option(
      '--quantize <type>',
      'also onnx/model_quantized.onnx: int8 weights per output column, activations quantized at run time (as ' +
        "onnxruntime's quantize_dynamic; transformers.js loads it with dtype 'q8')",
      choiceOption('--quantize', ['int8'] as const),
    )
    .option('--teacher <dir>', "the card's teacher: parameters against it, base_model (default: the run's teacher)")
    .option('--probe-report <file>', "the card's probe results: the JSON `distill probe --out` wrote")
    .option('--bench-report <file>', "the card's inference speed: the JSON lines `distill bench --inference` printed")
    .option(
      '--eval-report <files...>',
      "the card's validation: JSON `distill eval` printed (the student's, the teacher's)",
    )
    .option('--license <id>', 'the card\'s license (default: the teacher card\'s, else "other")')
    .option(
      '--force',
      'replace an earlier export at --out: it is moved to OUT.old-<time> (never deleted); any other folder is refused',
      false,
    )
    .action(async (o: ExportCommandOptions) => {
      const summary = await exportStudent({
        student: o.student,
        out: o.out,
        force: o.force,
        ...(o.quantize ? { quantize: o.quantize } : {}),
        ...(o.teacher ? { teacher: o.teacher } : {}),
        ...(o.probeReport ? { probeReport: o.probeReport } : {}),
        ...(o.benchReport ? { benchReport: o.benchReport } : {}),
        ...(o.evalReport ? { evalReports: o.evalReport } : {}),
        ...(o.license ? { license: o.license } : {}),
      });
      // A tokenizer.json without a post-processor was said on loading it (corpus/tokenizer.ts): the export's has one.
      process.stdout.write(JSON.stringify(summary) + '\n');
    });
}
