/**
 * `pickscore model pull | list | info | verify | convert`: their flags. The actions (model-action.ts)
 * are loaded when a command runs, so that `--help` and `--version` load no more than the declarations.
 */
import { Command, Option } from 'commander';
import { ATTENTION_IMPLS, PRECISIONS } from '../model-format.js';
import type { ConvertFlags, PullFlags } from './flags.js';

const precisionOption = () => new Option('--precision <precision>', 'encoder precision to build').choices(PRECISIONS).default('fp32');
const attentionOption = () => new Option('--attention <kind>', 'fused uses onnxruntime contrib ops (attention, LayerNorm, GELU): what rank and eval run on the CPU in fp32 and int8 and on CUDA in fp16; plain is standard ONNX only').choices(ATTENTION_IMPLS).default('plain');

function quietVerbose(command: Command): Command {
  return command
    .option('-q, --quiet', 'no progress or informational lines', false)
    .option('-v, --verbose', 'progress lines on stderr even when it is not a terminal', false);
}

const actions = () => import('./model-action.js');

export function registerModelCommand(program: Command): void {
  const model = program.command('model').description('get, convert, list and check models');

  quietVerbose(model.command('pull')
    .description('download a model from the Hugging Face Hub (or reuse the Hub cache) and convert it to ONNX')
    .argument('[model]', 'known model name or Hub repository org/name[@revision] (default: PickScore v1)')
    .addOption(precisionOption())
    .addOption(attentionOption())
    .option('--json', 'print the result as JSON', false))
    .action(async (name: string | undefined, flags: PullFlags) => (await actions()).pullAction(name, flags));

  quietVerbose(model.command('convert')
    .description('convert a CLIP checkpoint folder into a pickscore model folder: Hugging Face (config.json + weights) or open_clip (open_clip_config.json or --open-clip-model, + weights)')
    .argument('<dir>', 'checkpoint folder')
    .requiredOption('-o, --out <dir>', 'output model folder')
    .addOption(precisionOption())
    .addOption(attentionOption())
    .option('--tokenizer <dir>', 'folder with the tokenizer and preprocessor files, when the checkpoint lacks them')
    .option('--name <name>', 'model name recorded in the manifest')
    .option('--open-clip-model <name>', 'open_clip architecture (ViT-H-14, ViT-L-14, ViT-B-32) of open_clip weights without open_clip_config.json, such as HPSv2\'s .pt')
    .option('--head <file>', "an image head's .pth appended to the image graph (the LAION aesthetic predictor's sac+logos+ava1-l14-linearMSE.pth), for --scorer aesthetic")
    .option('--json', 'print the result as JSON', false))
    .action(async (dir: string, flags: ConvertFlags) => (await actions()).convertAction(dir, flags));

  model.command('list')
    .description('known models and the converted models in the cache')
    .option('--json', 'print JSON', false)
    .action(async (flags: { json: boolean }) => (await actions()).listAction(flags));

  model.command('info')
    .description('what a model is, where it came from, and its converted variants')
    .argument('<model>', 'known model name, Hub repository or model folder')
    .option('--json', 'print JSON', false)
    .action(async (name: string, flags: { json: boolean }) => (await actions()).infoAction(name, flags));

  model.command('verify')
    .description('re-hash a converted model against its checksums and source, and run a smoke inference')
    .argument('<model>', 'known model name, Hub repository or model folder')
    .option('--no-inference', 'skip the smoke inference')
    .option('--json', 'print JSON', false)
    .action(async (name: string, flags: { json: boolean; inference: boolean }) => (await actions()).verifyAction(name, flags));
}
