/**
 * The deployment docs run on clusters this suite cannot reach, so they are linted instead: the YAML
 * parses (a strict subset parser, cross-checked with PyYAML where Debian's python3-yaml is present),
 * the manifests have the shape their engine needs, every shell snippet passes `sh -n`/`bash -n`, and
 * every `pickscore` invocation parses with the real commander program (subcommands, flags, choices,
 * argument counts), with the shard each job would compute checked against the engine's settings.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { buildProgram } from '../src/cli/program.js';
import { shardFromEnv, parseShard } from '../src/shard.js';
import { repoRoot } from './helpers/paths.js';
import { parseYamlDocuments, type YamlValue } from './helpers/docs-lint-yaml.js';
import { findInvocations, markdownShellBlocks, type Invocation } from './helpers/docs-lint-shell.js';

const docs = path.join(repoRoot, 'docs');
const read = (name: string): string => readFileSync(path.join(docs, name), 'utf8');

type Obj = { [key: string]: YamlValue };
function obj(value: YamlValue | undefined, where: string): Obj {
  assert.ok(value !== null && typeof value === 'object' && !Array.isArray(value), `${where} is a mapping`);
  return value as Obj;
}
function list(value: YamlValue | undefined, where: string): YamlValue[] {
  assert.ok(Array.isArray(value), `${where} is a sequence`);
  return value;
}

interface Parsed { command: string; opts: Record<string, unknown>; operands: unknown[] }

/** Parses an invocation with the real program; every command's action is replaced by a recorder. */
function parseInvocation(invocation: Invocation): Parsed {
  const program = buildProgram();
  let parsed: Parsed | undefined;
  let messages = '';
  const instrument = (command: Command): void => {
    command.exitOverride().configureOutput({ writeErr: (text) => (messages += text), writeOut: (text) => (messages += text) });
    if (command.commands.length === 0) {
      command.action((...args: unknown[]) => {
        const self = args[args.length - 1] as Command;
        parsed = { command: commandPath(self), opts: self.opts(), operands: args.slice(0, -2) };
      });
    }
    command.commands.forEach(instrument);
  };
  instrument(program);
  try {
    program.parse(['node', 'pickscore', ...invocation.args]);
  } catch (err) {
    if (err instanceof CommanderError && err.exitCode === 0) return { command: '--help', opts: {}, operands: [] };
    assert.fail(`${invocation.text}\n  does not parse: ${err instanceof CommanderError ? messages.trim() || err.message : String(err)}`);
  }
  assert.ok(parsed, `${invocation.text}\n  names no command that runs`);
  return parsed;
}

function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c && c.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** `sh -n` (or bash -n) on a snippet: syntax only, nothing runs. */
function assertShellSyntax(shell: 'sh' | 'bash', script: string, where: string): void {
  const result = spawnSync(shell, ['-n'], { input: script, encoding: 'utf8' });
  assert.equal(result.status, 0, `${where}: ${shell} -n fails:\n${result.stderr}\n${script}`);
}

/**
 * PyYAML, where installed, must read the file as the subset parser does (with YAML 1.2 booleans, as
 * Kubernetes and GitHub do: `on` and `yes` are strings).
 */
function crossCheckWithPyYaml(file: string, documents: YamlValue[]): void {
  const script = [
    'import json, re, sys, yaml',
    'class L(yaml.SafeLoader): pass',
    "L.yaml_implicit_resolvers = {k: [(t, r) for t, r in v if t != 'tag:yaml.org,2002:bool'] for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}",
    "L.add_implicit_resolver('tag:yaml.org,2002:bool', re.compile(r'^(?:true|True|TRUE|false|False|FALSE)$'), list('tTfF'))",
    'print(json.dumps(list(yaml.load_all(open(sys.argv[1]), Loader=L))))',
  ].join('\n');
  const result = spawnSync('/usr/bin/python3', ['-c', script, file], { encoding: 'utf8' });
  if (result.error || /No module named '?yaml/.test(result.stderr)) {
    process.stderr.write(`notice: PyYAML (python3-yaml) not available; ${path.basename(file)} is checked by the subset parser only\n`);
    return;
  }
  assert.equal(result.status, 0, `PyYAML cannot parse ${file}: ${result.stderr}`);
  assert.deepEqual(JSON.parse(result.stdout), documents, `PyYAML and the subset parser read ${file} differently`);
}

function parseYamlFile(name: string): YamlValue[] {
  const documents = parseYamlDocuments(read(name));
  crossCheckWithPyYaml(path.join(docs, name), documents);
  return documents;
}

test('the YAML subset parser reads what it claims and refuses the rest', () => {
  assert.deepEqual(parseYamlDocuments('a: 1\nb:\n  - x\n  - y: "q: r"\n    z: [1, \'two\']\nc: |\n  line 1\n  line 2\non: yes\n'), [
    { a: 1, b: ['x', { y: 'q: r', z: [1, 'two'] }], c: 'line 1\nline 2\n', on: 'yes' },
  ]);
  assert.deepEqual(parseYamlDocuments('k: v # note\n---\n- 1\n'), [{ k: 'v' }, [1]]);
  assert.throws(() => parseYamlDocuments('a: 1\na: 2\n'), /line 2: duplicate key "a"/);
  assert.throws(() => parseYamlDocuments('a:\n  b: 1\n   c: 2\n'), /line 3/);
  assert.throws(() => parseYamlDocuments('a: >\n  folded\n'), /folded block scalars/);
  assert.throws(() => parseYamlDocuments('a: &anchor 1\n'), /anchors/);
  assert.throws(() => parseYamlDocuments('a: b: c\n'), /": " inside a plain scalar/);
  assert.throws(() => parseYamlDocuments('a:\n\t- 1\n'), /tab/);
});

test('the shell scanner finds invocations as the shell splits them', () => {
  const found = findInvocations('x=$(sbatch --parsable "$0")\nexec pickscore rank "a b" --out \'c d\' \\\n  --shard-count 4 || [ "$?" -eq 3 ] # done\nsbatch --wrap "pickscore merge p/*.json --out $OUT/r.csv"\n');
  assert.deepEqual(found.map((f) => f.args), [['rank', 'a b', '--out', 'c d', '--shard-count', '4'], ['merge', 'p/*.json', '--out', '$OUT/r.csv']]);
});

test('Kubernetes: an Indexed Job whose pods each rank one shard, and a merge Job', () => {
  const [rankJob, mergeJob] = parseYamlFile('k8s-indexed-job.yaml').map((d, i) => obj(d, `document ${i}`));
  assert.equal(rankJob.apiVersion, 'batch/v1');
  assert.equal(rankJob.kind, 'Job');
  const spec = obj(rankJob.spec, 'spec');
  assert.equal(spec.completionMode, 'Indexed');
  const completions = spec.completions;
  assert.ok(typeof completions === 'number' && completions >= 2, 'completions is the shard count');
  assert.ok(typeof spec.parallelism === 'number' && spec.parallelism >= 1 && spec.parallelism <= completions);
  const pod = obj(obj(spec.template, 'template').spec, 'template.spec');
  assert.ok(pod.restartPolicy === 'Never' || pod.restartPolicy === 'OnFailure', 'a Job pod must not restart Always');
  const [container] = list(pod.containers, 'containers').map((c) => obj(c, 'container'));
  const script = containerScript(container);
  assertShellSyntax('sh', script, 'rank container');
  const [rank, ...others] = findInvocations(script);
  assert.equal(others.length, 0);
  const parsed = parseInvocation(rank);
  assert.equal(parsed.command, 'rank');
  assert.equal(parsed.opts.format, 'json', 'parts must be JSON for merge');
  assert.match(String(parsed.opts.out), /\$\{?JOB_COMPLETION_INDEX\}?/, 'each pod writes its own part');
  for (let index = 0; index < completions; index++) {
    const shard = shardFromEnv({ JOB_COMPLETION_INDEX: String(index) }, parsed.opts as { shard?: string; shardCount?: string });
    assert.deepEqual(shard, { index, count: completions }, '--shard-count matches completions');
  }
  const volumeClaims = list(pod.volumes, 'volumes').map((v) => obj(obj(v, 'volume').persistentVolumeClaim, 'claim').claimName);
  assert.deepEqual(volumeClaims, ['pickscore-data']);

  assert.equal(mergeJob.kind, 'Job');
  const mergePod = obj(obj(obj(mergeJob.spec, 'spec').template, 'template').spec, 'template.spec');
  const wait = containerScript(obj(list(mergePod.initContainers, 'initContainers')[0], 'init container'));
  assertShellSyntax('sh', wait, 'wait-for-parts');
  assert.match(wait, new RegExp(`-ge ${completions}\\b`), 'the merge waits for every part');
  const mergeScript = containerScript(obj(list(mergePod.containers, 'containers')[0], 'merge container'));
  assertShellSyntax('sh', mergeScript, 'merge container');
  const [merge] = findInvocations(mergeScript);
  assert.equal(parseInvocation(merge).command, 'merge');
});

function containerScript(container: Obj): string {
  assert.deepEqual(container.command, ['/bin/sh', '-c'], 'the container runs its args as one sh script');
  const [script] = list(container.args, 'args');
  assert.equal(typeof script, 'string');
  return script as string;
}

test('Slurm: a job array that ranks one shard per task, and a merge that depends on it', () => {
  const script = read('slurm-array.sh');
  assertShellSyntax('bash', script, 'slurm-array.sh');
  const array = /^#SBATCH --array=(\d+)-(\d+)$/m.exec(script);
  assert.ok(array, '#SBATCH --array=A-B');
  const [min, max] = [Number(array[1]), Number(array[2])];
  assert.match(script, /sbatch --parsable "\$0"/, 'the script submits itself as the array');
  assert.match(script, /--dependency="afterok:\$\{array_job\}"/, 'the merge waits for every array task to succeed');
  const invocations = findInvocations(script).map((inv) => ({ inv, parsed: parseInvocation(inv) }));
  assert.deepEqual(invocations.map((i) => i.parsed.command), ['model pull', 'merge', 'rank']);
  const rank = invocations[2].parsed;
  assert.equal(rank.opts.format, 'json');
  assert.match(String(rank.opts.out), /\$\{?SLURM_ARRAY_TASK_ID\}?/);
  for (let id = min; id <= max; id++) {
    const env = { SLURM_ARRAY_TASK_ID: String(id), SLURM_ARRAY_TASK_MIN: String(min), SLURM_ARRAY_TASK_MAX: String(max), SLURM_ARRAY_TASK_COUNT: String(max - min + 1) };
    assert.deepEqual(shardFromEnv(env, rank.opts as { shard?: string }), { index: id - min, count: max - min + 1 });
  }
});

test('GitHub Actions: matrix shards score the eval, and a gate job merges them into the job summary', () => {
  const [workflow] = parseYamlFile('github-actions-eval.yml').map((d) => obj(d, 'workflow'));
  assert.ok('pull_request' in obj(workflow.on, 'on'), 'runs on pull requests');
  const jobs = obj(workflow.jobs, 'jobs');
  const score = obj(jobs.score, 'jobs.score');
  const shards = list(obj(obj(score.strategy, 'strategy').matrix, 'matrix').shard, 'matrix.shard');
  assert.deepEqual(shards, shards.map((_, i) => i), 'matrix.shard is 0..N-1');
  const gate = obj(jobs.gate, 'jobs.gate');
  assert.equal(gate.needs, 'score');
  const runs = (job: Obj): string[] => list(job.steps, 'steps').map((s) => obj(s, 'step').run).filter((r): r is string => typeof r === 'string');
  const parsedIn = (job: Obj, shard: number): Parsed[] => runs(job).flatMap((run) => {
    const script = run.replace(/\$\{\{\s*matrix\.shard\s*\}\}/g, String(shard));
    assert.doesNotMatch(script, /\$\{\{/, `an expression other than matrix.shard in: ${run}`);
    assertShellSyntax('bash', script, 'workflow step');
    return findInvocations(script).map(parseInvocation);
  });
  for (const shard of shards as number[]) {
    const evals = parsedIn(score, shard).filter((p) => p.command === 'eval');
    assert.equal(evals.length, 1);
    assert.deepEqual(parseShard(String(evals[0].opts.shard)), { index: shard, count: shards.length });
    assert.ok(evals[0].opts.baseline && evals[0].opts.candidate, 'the eval names --baseline and --candidate, so it gates');
  }
  const merges = parsedIn(gate, 0).filter((p) => p.command === 'merge');
  assert.equal(merges.length, 1);
  assert.match(read('github-actions-eval.yml'), /GITHUB_STEP_SUMMARY/);
});

test('every pickscore invocation in the docs parses with the real program', () => {
  const sources: [string, string][] = [
    ['slurm-array.sh', read('slurm-array.sh')],
    ...markdownShellBlocks(read('scale-out.md')).map((block, i): [string, string] => [`scale-out.md block ${i + 1}`, block]),
  ];
  let count = 0;
  for (const [where, text] of sources) {
    for (const invocation of findInvocations(text)) {
      parseInvocation({ ...invocation, text: `${where}: ${invocation.text}` });
      count++;
    }
  }
  assert.ok(count >= 10, `only ${count} invocations found: the scanner or the docs changed`);
});
