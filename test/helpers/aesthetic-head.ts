/**
 * A tiny LAION aesthetic head saved by PyTorch as its .pth is (from a GPU, no activations), and its
 * forward computed by PyTorch on L2-normalised embeddings as \`simple_inference.py\` does.
 */
import { runPython } from './torch-python.js';

/** The LAION MLP class (`layers` = the Sequential), saved as its .pth was: from a GPU, into a file named archive. */
const HEAD_SCRIPT = String.raw`
import io, json, sys
import numpy as np
import torch
import torch.serialization as serialization

class MLP(torch.nn.Module):
    def __init__(self, sizes, relu):
        super().__init__()
        mods = []
        n = len(sizes) - 1
        for i in range(n):
            mods.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
            if relu and i < n - 1:
                mods.append(torch.nn.ReLU())
            if i < n - 2:
                mods.append(torch.nn.Dropout(0.2))
        self.layers = torch.nn.Sequential(*mods)
    def forward(self, x):
        return self.layers(x)

def normalized(a, axis=-1, order=2):
    l2 = np.atleast_1d(np.linalg.norm(a, order, axis))
    l2[l2 == 0] = 1
    return a / np.expand_dims(l2, axis)

job = json.load(sys.stdin)
if job['op'] == 'make':
    torch.manual_seed(job['seed'])
    model = MLP(job['sizes'], job.get('relu', False))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    tag = serialization.location_tag
    serialization.location_tag = lambda storage: 'cuda:0'
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    serialization.location_tag = tag
    open(job['dst'], 'wb').write(buffer.getvalue())
    print(json.dumps(str(model.layers)))
else:
    sd = torch.load(job['file'], map_location='cpu')
    model = MLP(job['sizes'], job.get('relu', False))
    model.load_state_dict(sd)
    model.eval()
    x = normalized(np.array(job['embeds'], dtype=np.float32))
    with torch.no_grad():
        y = model(torch.from_numpy(x).float())
    print(json.dumps(y.flatten().tolist()))
`;

/** LAION's layout at tiny sizes: Linear(16, 20), Dropout, Linear(20, 12), Dropout, Linear(12, 8), Dropout, Linear(8, 4), Linear(4, 1). */
export const SIZES = [16, 20, 12, 8, 4, 1];

export function makeHead(file: string, opts: { sizes?: number[]; relu?: boolean; seed?: number } = {}): string {
  return JSON.parse(runPython(HEAD_SCRIPT, [], JSON.stringify({ op: 'make', dst: file, sizes: opts.sizes ?? SIZES, relu: opts.relu ?? false, seed: opts.seed ?? 3 })).toString()) as string;
}

export function torchHead(file: string, embeds: number[][], opts: { sizes?: number[]; relu?: boolean } = {}): number[] {
  return JSON.parse(runPython(HEAD_SCRIPT, [], JSON.stringify({ op: 'forward', file, embeds, sizes: opts.sizes ?? SIZES, relu: opts.relu ?? false })).toString()) as number[];
}

