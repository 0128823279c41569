/**
 * Child process for the cross-process conversion test: resolves one model (pulling and converting it
 * if needed) with the environment it was given, and prints the folder and fingerprint as JSON.
 * Usage: node registry-resolver.js <model>
 */
import { resolveModel } from '../../src/model/registry.js';

const { dir, manifest } = await resolveModel(process.argv[2], { precision: 'fp32' });
process.stdout.write(`${JSON.stringify({ dir, fingerprint: manifest.fingerprint })}\n`);
