#!/usr/bin/env node
// The bin is only a shim: all parsing, printing and exit codes live in src/cli.
import { main } from '../dist/cli/main.js';

await main(process.argv);
