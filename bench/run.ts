/**
 * `npm run bench`: every benchmark, one after the other, each in its own process so memory and
 * caches do not carry over. Sizes follow each benchmark's PANINI_BENCH_* variables.
 */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';

const BENCHES = ['clean-throughput', 'git-ops', 'memory', 'max-atom-size', 'decompose-media', 'compression', 'transfer', 'gc'];
const only = process.argv.slice(2);

process.stdout.write(`# git-panini benchmarks — ${new Date().toISOString()} — ${cpus().length} cores, load ${loadavg()[0]!.toFixed(2)}\n`);
let failed = 0;
for (const name of BENCHES.filter((b) => only.length === 0 || only.includes(b))) {
  process.stdout.write(`\n# ${name}\n`);
  const r = spawnSync(process.execPath, [fileURLToPath(new URL(`./${name}.js`, import.meta.url))], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    process.stdout.write(`(${name} failed: exit ${r.status ?? r.signal})\n`);
  }
}
process.exitCode = failed === 0 ? 0 : 1;
