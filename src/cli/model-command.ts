/**
 * `pickscore model pull | list | info | verify | convert`: flag parsing and printing only; the work is
 * in src/commands/model.ts. Data goes to stdout; progress bars to stderr when it is a terminal.
 */
import { Command, Option } from 'commander';
import type { AttentionImpl, Precision } from '../model/clip-graph.js';
import { describeRetry } from '../model/hub.js';
import {
  modelConvert, modelInfo, modelList, modelPull, modelVerify, type ConvertedModel, type ModelInfoResult, type ModelListEntry, type ModelVerifyResult,
} from '../commands/model.js';
import { ExitCode } from './exit-codes.js';
import { createConsole, formatBytes, modelProgress, printJson, printText, withInterruptSignal } from './output.js';

const PRECISION_CHOICES = ['fp32', 'fp16', 'int8'];
const ATTENTION_CHOICES = ['plain', 'fused'];

interface CommonFlags { quiet: boolean; verbose: boolean; json?: boolean }

const precisionOption = () => new Option('--precision <precision>', 'encoder precision to build').choices(PRECISION_CHOICES).default('fp32');
const attentionOption = () => new Option('--attention <kind>', 'fused uses onnxruntime contrib attention ops (CUDA)').choices(ATTENTION_CHOICES).default('plain');

function quietVerbose(command: Command): Command {
  return command
    .option('-q, --quiet', 'no progress or informational lines', false)
    .option('-v, --verbose', 'progress lines on stderr even when it is not a terminal', false);
}

function describeConverted(c: ConvertedModel): string {
  return `${c.manifest.precision}${c.manifest.attention === 'plain' ? '' : `/${c.manifest.attention}`}  ${formatBytes(c.bytes)}  ${c.dir}  (fingerprint ${c.manifest.fingerprint.slice(0, 16)})`;
}

function renderList(entries: ModelListEntry[]): string {
  return entries.map((e) => [
    `${e.name}${e.default ? ' (default)' : ''}  ${e.description}`,
    ...(e.weights ? [`  weights    ${e.weights}`, `  processor  ${e.processor}`] : []),
    ...(e.converted.length > 0 ? e.converted.map((c) => `  converted  ${describeConverted(c)}`) : ['  converted  no (run `pickscore model pull ' + e.name + '`)']),
  ].join('\n')).join('\n\n');
}

function renderInfo(info: ModelInfoResult): string {
  const lines = [info.name];
  if (info.known) {
    lines.push(`  description  ${info.known.description}`, `  weights      ${info.known.weights.repo}@${info.known.weights.revision}: ${info.known.weights.files.join(', ')}`,
      `  processor    ${info.known.processor.repo}@${info.known.processor.revision}: ${info.known.processor.files.join(', ')}`);
  }
  if (info.converted.length === 0) lines.push('  not converted yet; `pickscore model pull` fetches and converts it');
  for (const c of info.converted) {
    const m = c.manifest;
    lines.push(`  ${describeConverted(c)}`,
      `    source       ${m.source.repo ? `${m.source.repo}@${m.source.revision ?? '?'}` : m.source.dir ?? '?'}`,
      ...m.source.files.map((f) => `      ${f.name}  ${formatBytes(f.size)}  sha256 ${f.sha256}`),
      `    logit scale  ${m.logitScale}`, `    embeddings   text ${m.text.embedDim}, image ${m.image.embedDim} (${m.image.imageSize} px, context ${m.text.contextLength})`,
      `    converted by pickscore ${m.pickscoreVersion}, ONNX opset ${m.onnxOpset}`);
  }
  return lines.join('\n');
}

function renderVerify(results: ModelVerifyResult[]): string {
  return results.map((r) => [
    `${r.ok ? 'ok' : 'FAILED'}  ${r.name} (${r.precision})  ${r.dir}`,
    ...r.checks.map((c) => `  ${c.skipped ? 'skip' : c.ok ? 'ok  ' : 'FAIL'}  ${c.name}: ${c.detail}`),
  ].join('\n')).join('\n\n');
}

export function registerModelCommand(program: Command): void {
  const model = program.command('model').description('get, convert, list and check models');

  quietVerbose(model.command('pull')
    .description('download a model from the Hugging Face Hub (or reuse the Hub cache) and convert it to ONNX')
    .argument('[model]', 'known model name or Hub repository org/name[@revision] (default: PickScore v1)')
    .addOption(precisionOption())
    .addOption(attentionOption())
    .option('--json', 'print the result as JSON', false))
    .action(async (name: string | undefined, flags: CommonFlags & { precision: Precision; attention: AttentionImpl }) => {
      const console = createConsole(flags);
      const progress = modelProgress(console);
      const result = await withInterruptSignal(console, ({ signal }) => modelPull({ model: name, precision: flags.precision, attention: flags.attention,
        onProgress: progress.onProgress, onRetry: (e) => console.log(`warning: ${describeRetry(e)}`), signal }))
        .finally(progress.stop);
      if (flags.json) return printJson(result);
      await printText(`${result.alreadyPresent ? 'already converted' : 'converted'}: ${result.manifest.name}  ${describeConverted(result)}`);
    });

  quietVerbose(model.command('convert')
    .description('convert a Hugging Face CLIP checkpoint folder (config.json + weights) into a pickscore model folder')
    .argument('<dir>', 'checkpoint folder')
    .requiredOption('-o, --out <dir>', 'output model folder')
    .addOption(precisionOption())
    .addOption(attentionOption())
    .option('--tokenizer <dir>', 'folder with the tokenizer and preprocessor files, when the checkpoint lacks them')
    .option('--name <name>', 'model name recorded in the manifest')
    .option('--open-clip-model <name>', 'open_clip architecture (ViT-H-14, ViT-L-14, ViT-B-32) of open_clip weights without open_clip_config.json, such as HPSv2\'s .pt')
    .option('--json', 'print the result as JSON', false))
    .action(async (dir: string, flags: CommonFlags & { out: string; precision: Precision; attention: AttentionImpl; tokenizer?: string; name?: string; openClipModel?: string }) => {
      const console = createConsole(flags);
      const bar = console.progress('convert', 'bytes');
      const result = await modelConvert({ src: dir, out: flags.out, precision: flags.precision, attention: flags.attention, tokenizerDir: flags.tokenizer,
        name: flags.name, openClipArchitecture: flags.openClipModel, onProgress: (done, total) => bar.update(done, total) }).finally(() => bar.stop());
      if (flags.json) return printJson(result);
      await printText(`converted: ${result.manifest.name}  ${describeConverted(result)}`);
    });

  model.command('list')
    .description('known models and the converted models in the cache')
    .option('--json', 'print JSON', false)
    .action(async (flags: { json: boolean }) => {
      const entries = await modelList();
      await (flags.json ? printJson(entries) : printText(renderList(entries)));
    });

  model.command('info')
    .description('what a model is, where it came from, and its converted variants')
    .argument('<model>', 'known model name, Hub repository or model folder')
    .option('--json', 'print JSON', false)
    .action(async (name: string, flags: { json: boolean }) => {
      const info = await modelInfo({ model: name });
      await (flags.json ? printJson(info) : printText(renderInfo(info)));
    });

  model.command('verify')
    .description('re-hash a converted model against its checksums and source, and run a smoke inference')
    .argument('<model>', 'known model name, Hub repository or model folder')
    .option('--no-inference', 'skip the smoke inference')
    .option('--json', 'print JSON', false)
    .action(async (name: string, flags: { json: boolean; inference: boolean }) => {
      const results = await modelVerify({ model: name, inference: flags.inference });
      await (flags.json ? printJson(results) : printText(renderVerify(results)));
      if (!results.every((r) => r.ok)) process.exitCode = ExitCode.model;
    });
}
