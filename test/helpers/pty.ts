/**
 * Runs a command with its stderr on a pseudo-terminal, as a person at a terminal runs pickscore: stdout
 * stays a pipe (the data), stderr is a TTY (progress bars, informational lines). Python's `pty` module
 * makes the terminal; tests that need it skip with a printed notice where python3 is missing.
 *
 * `screen()` replays what was written to the terminal on a minimal emulator (the escapes cli-progress
 * and the console use), so a test can check what a person would see at the end, not just the bytes.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { spawnCollecting, type CliResult } from './pipe-cli.js';

const python = process.env.PICKSCORE_PTY_PYTHON ?? '/usr/bin/python3';

export function ptyAvailable(): boolean {
  const ok = spawnSync(python, ['-c', 'import pty, termios'], { encoding: 'utf8' }).status === 0;
  if (!ok) process.stderr.write(`notice: ${python} with the pty module not found; terminal tests are skipped\n`);
  return ok;
}

// The child's stderr is the pty's slave, 100 columns wide; the parent copies the master to its own
// stderr until the child closes it, forwards SIGINT and SIGTERM, and exits as the child did.
const RUNNER = `
import fcntl, os, signal, struct, subprocess, sys, termios
master, slave = os.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stderr=slave)
os.close(slave)
for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, lambda n, f: child.send_signal(n))
while True:
    try:
        data = os.read(master, 65536)
    except InterruptedError:
        continue
    except OSError:
        break
    if not data:
        break
    os.write(2, data)
code = child.wait()
sys.exit(code if code >= 0 else 128 - code)
`;

/** Spawns `command args` with stderr on a terminal; `stderr` of the result is the terminal's transcript. */
export function spawnInPty(command: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }): { child: ChildProcess; done: Promise<CliResult> } {
  return spawnCollecting(python, ['-c', RUNNER, command, ...args], opts);
}

/**
 * The lines left on an unbounded screen after `transcript`: printable text, CR, LF, ESC 7/ESC 8
 * (save and restore the cursor), CSI n G (column), CSI n K (erase in line); other CSI sequences
 * (cursor visibility, line wrapping) change nothing on screen and are dropped.
 */
export function screen(transcript: string): string[] {
  const lines: string[][] = [[]];
  let row = 0;
  let col = 0;
  let saved = { row: 0, col: 0 };
  const line = () => (lines[row] ??= []);
  for (let i = 0; i < transcript.length; i++) {
    const c = transcript[i];
    if (c === '\r') col = 0;
    else if (c === '\n') {
      row++;
      while (lines.length <= row) lines.push([]);
    } else if (c === '\x1b') {
      const next = transcript[i + 1];
      if (next === '7') { saved = { row, col }; i++; continue; }
      if (next === '8') { ({ row, col } = saved); i++; continue; }
      const csi = /^\[([?\d;]*)([A-Za-z])/.exec(transcript.slice(i + 1, i + 20));
      if (!csi) continue;
      i += csi[0].length;
      const n = Number(csi[1] || 0);
      if (csi[2] === 'G') col = Math.max(0, (n || 1) - 1);
      else if (csi[2] === 'K') {
        const l = line();
        if (n === 0) l.length = Math.min(l.length, col);
        else if (n === 1) for (let k = 0; k <= col && k < l.length; k++) l[k] = ' ';
        else l.length = 0;
      }
    } else {
      const l = line();
      while (l.length < col) l.push(' ');
      l[col++] = c;
    }
  }
  const text = lines.map((l) => l.join('').trimEnd());
  while (text.length > 0 && text[text.length - 1] === '') text.pop();
  return text;
}
