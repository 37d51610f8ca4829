#!/usr/bin/env node
// ONNX Runtime (npm onnxruntime-node, CPU), the forward-only peer of bench/run.py: times the
// forward pass of MODEL to VALUE (which must be a graph output: see add_output.py) on a
// 1x3xHxW input, and prints one key=value line like bench_engine's (median_cpu_ms: the
// process's CPU time per run, user + system, all threads, for a loaded machine).
//
//   node ort_forward.js MODEL VALUE WxH [--iters N] [--warmup N] [--threads N] [--serve 1]
//
// With --serve 1: the session created once, then one command per line of stdin, answered as
// bench_engine serve answers it (`run N` -> `runs ms=A,B,... cpu_ms=A,B,...`; `quit`), for
// bench/modern.py --pairs, which alternates the two engines run by run.
'use strict';
const ort = require('onnxruntime-node');

function median(v) {
  const s = [...v].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

// One run of the session: its outputs, wall time and the process's CPU time (user + system,
// all threads), in ms.
async function timedRun(session, feeds, value) {
  const c = process.cpuUsage();
  const a = process.hrtime.bigint();
  const out = await session.run(feeds, [value]);
  const ms = Number(process.hrtime.bigint() - a) / 1e6;
  const dc = process.cpuUsage(c);
  return { out, ms, cpuMs: (dc.user + dc.system) / 1e3 };
}

async function main() {
  const args = process.argv.slice(2);
  if (args.length < 3) {
    console.error('usage: node ort_forward.js MODEL VALUE WxH [--iters N] [--warmup N] [--threads N]');
    process.exit(2);
  }
  const [model, value, size] = args;
  const opt = { iters: 5, warmup: 1, threads: 2, serve: 0 };
  for (let i = 3; i + 1 < args.length; i += 2) opt[args[i].replace(/^--/, '')] = Number(args[i + 1]);
  const [w, h] = size.split('x').map(Number);
  const t0 = process.hrtime.bigint();
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: opt.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const setupMs = Number(process.hrtime.bigint() - t0) / 1e6;
  // The same deterministic-looking content as bench_engine's is not needed: dense
  // convolutions cost the same whatever the pixels are.
  const data = new Float32Array(3 * w * h);
  for (let i = 0; i < data.length; i++) data[i] = ((i * 2654435761) % 256) - 128;
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, [1, 3, h, w]) };
  if (opt.serve) return serve(session, feeds, value, w, h);
  const times = [], cpu = [];
  let shape = null;
  for (let r = 0; r < opt.warmup + opt.iters; r++) {
    const t = await timedRun(session, feeds, value);
    if (r >= opt.warmup) {
      times.push(t.ms);
      cpu.push(t.cpuMs);
    }
    shape = t.out[value].dims;
  }
  const rss = process.resourceUsage().maxRSS / 1024;
  console.log(`ort_forward size=${w}x${h} out=${shape.join('x')} iters=${opt.iters} ` +
              `median_ms=${median(times).toFixed(2)} min_ms=${Math.min(...times).toFixed(2)} ` +
              `median_cpu_ms=${median(cpu).toFixed(2)} setup_ms=${setupMs.toFixed(1)} threads=${opt.threads} peak_rss_mb=${rss.toFixed(1)}`);
}

async function serve(session, feeds, value, w, h) {
  const rl = require('readline').createInterface({ input: process.stdin, terminal: false });
  console.log(`ready size=${w}x${h}`);
  for await (const line of rl) {
    const m = /^run (\d+)/.exec(line);
    if (m && Number(m[1]) >= 1) {
      const ms = [], cpu = [];
      for (let r = 0; r < Number(m[1]); r++) {
        const t = await timedRun(session, feeds, value);
        ms.push(t.ms);
        cpu.push(t.cpuMs);
      }
      console.log(`runs ms=${ms.map((x) => x.toFixed(4)).join(',')} ` +
                  `cpu_ms=${cpu.map((x) => x.toFixed(4)).join(',')}`);
    } else if (line.startsWith('quit')) {
      break;
    } else {
      console.log('error unknown command');
    }
  }
  rl.close();
}

main().catch((e) => { console.error('ort_forward.js: ' + e.message); process.exit(1); });
