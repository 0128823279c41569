/** `pickscore model` runs: the work is in src/commands/model.ts; this renders its results. Data goes to stdout; progress bars to stderr when it is a terminal. */
import { describeRetry } from '../model/hub.js';
import {
  modelConvert, modelInfo, modelList, modelPull, modelVerify, type ConvertedModel, type ModelInfoResult, type ModelListEntry, type ModelVerifyResult,
} from '../commands/model.js';
import { ExitCode } from './exit-codes.js';
import type { ConvertFlags, PullFlags } from './flags.js';
import { createConsole, formatBytes, modelProgress, printJson, printText, withInterruptSignal } from './output.js';

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

export async function pullAction(name: string | undefined, flags: PullFlags): Promise<void> {
  const console = createConsole(flags);
  const progress = modelProgress(console);
  const result = await withInterruptSignal(console, ({ signal }) => modelPull({ model: name, precision: flags.precision, attention: flags.attention,
    onProgress: progress.onProgress, onRetry: (e) => console.log(`warning: ${describeRetry(e)}`), signal }))
    .finally(progress.stop);
  if (flags.json) return printJson(result);
  await printText(`${result.alreadyPresent ? 'already converted' : 'converted'}: ${result.manifest.name}  ${describeConverted(result)}`);
}

export async function convertAction(dir: string, flags: ConvertFlags): Promise<void> {
  const console = createConsole(flags);
  const bar = console.progress('convert', 'bytes');
  const result = await modelConvert({ src: dir, out: flags.out, precision: flags.precision, attention: flags.attention, tokenizerDir: flags.tokenizer,
    name: flags.name, openClipArchitecture: flags.openClipModel, head: flags.head, onProgress: (done, total) => bar.update(done, total) }).finally(() => bar.stop());
  if (flags.json) return printJson(result);
  await printText(`converted: ${result.manifest.name}  ${describeConverted(result)}`);
}

export async function listAction(flags: { json: boolean }): Promise<void> {
  const entries = await modelList();
  await (flags.json ? printJson(entries) : printText(renderList(entries)));
}

export async function infoAction(name: string, flags: { json: boolean }): Promise<void> {
  const info = await modelInfo({ model: name });
  await (flags.json ? printJson(info) : printText(renderInfo(info)));
}

export async function verifyAction(name: string, flags: { json: boolean; inference: boolean }): Promise<void> {
  const results = await modelVerify({ model: name, inference: flags.inference });
  await (flags.json ? printJson(results) : printText(renderVerify(results)));
  if (!results.every((r) => r.ok)) process.exitCode = ExitCode.model;
}
