'use strict';
// An ask/tell worker for morphnas, written from protos/ and docs/architecture-format.md alone.
//
//   npm ci && node worker.js --server 127.0.0.1:50051 --search <search id> --cycles 12 \
//       [--worker-id node-1] [--token T] [--out report.json]
//
// Each cycle: ask for a trial (SuggestTrials), download its INITIAL weights (a stream of chunks,
// checked against the announced sha256), parse the safetensors file and check it against the
// shapes the architecture implies, "train" (a deterministic perturbation of every trainable
// tensor: the point is the contract, not the learning), report progress, upload the new weights
// (in chunks with UploadWeights on odd cycles, inline on even ones), report the score, and
// download the TRAINED weights again to check they round-tripped byte for byte.
// --out writes what happened as JSON (the test in tests/contract/test_node_worker.py reads it).

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const safetensors = require('./safetensors');
const { expectedTensors } = require('./architecture');

const PROTOS = path.resolve(__dirname, '..', '..', 'protos');
const CHUNK = 64 * 1024; // any size up to the contract's 1 MiB a message
const DEADLINE_MS = 30000;

function parseArgs(argv) {
  const args = { server: '127.0.0.1:50051', cycles: 10, workerId: `node-${process.pid}` };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-(.)/g, (_, c) => c.toUpperCase());
    args[key] = argv[i + 1];
  }
  args.cycles = Number(args.cycles);
  if (!args.search) throw new Error('--search <search id> is required');
  return args;
}

function loadClient(address, token) {
  const definition = protoLoader.loadSync('morphnas/v1/morphnas.proto', {
    includeDirs: [PROTOS],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const { MorphNas } = grpc.loadPackageDefinition(definition).morphnas.v1;
  const client = new MorphNas(address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (token) metadata.set('authorization', `Bearer ${token}`);
  const options = () => ({ deadline: Date.now() + DEADLINE_MS });
  const unary = (method, request) =>
    new Promise((resolve, reject) =>
      client[method](request, metadata, options(), (err, response) => (err ? reject(err) : resolve(response))),
    );
  return { client, metadata, options, unary };
}

const sha256 = (buffer) => crypto.createHash('sha256').update(buffer).digest('hex');

function download(api, trialId, kind) {
  return new Promise((resolve, reject) => {
    const call = api.client.DownloadWeights({ trial_id: trialId, kind }, api.metadata, api.options());
    const parts = [];
    let header = null;
    call.on('data', (chunk) => {
      if (header === null) header = { total: Number(chunk.total_size), sha: chunk.sha256 };
      parts.push(chunk.data);
    });
    call.on('error', reject);
    call.on('end', () => {
      const blob = Buffer.concat(parts);
      if (header === null || blob.length !== header.total || sha256(blob) !== header.sha) {
        reject(new Error(`download of ${kind} weights of ${trialId} is incomplete or corrupt`));
      } else {
        resolve(blob);
      }
    });
  });
}

function upload(api, trialId, blob) {
  return new Promise((resolve, reject) => {
    const call = api.client.UploadWeights(api.metadata, api.options(), (err, response) =>
      err ? reject(err) : resolve(response),
    );
    call.write({ trial_id: trialId, total_size: blob.length, sha256: sha256(blob), data: blob.subarray(0, CHUNK) });
    for (let start = CHUNK; start < blob.length; start += CHUNK) {
      call.write({ data: blob.subarray(start, start + CHUNK) });
    }
    call.end();
  });
}

/** The tensors must be exactly those the architecture implies (names and shapes). */
function checkAgainstArchitecture(tensors, architecture) {
  const expected = expectedTensors(architecture);
  const names = Object.keys(tensors).sort();
  if (JSON.stringify(names) !== JSON.stringify(Object.keys(expected).sort())) {
    throw new Error(`tensor names ${names} do not match the architecture`);
  }
  for (const name of names) {
    if (JSON.stringify(tensors[name].shape) !== JSON.stringify(expected[name])) {
      throw new Error(`${name} has shape ${tensors[name].shape}, the architecture implies ${expected[name]}`);
    }
  }
}

/** "Training": every trainable tensor (weight, bias) moves by a small deterministic amount;
 * BatchNorm's running statistics are left as they are. */
function perturb(tensors, cycle) {
  const out = {};
  for (const [name, { shape, data }] of Object.entries(tensors)) {
    const moved = Float32Array.from(data);
    if (name.endsWith('.weight') || name.endsWith('.bias')) {
      for (let i = 0; i < moved.length; i++) moved[i] += 0.01 * Math.sin(1 + i + 7 * cycle);
    }
    out[name] = { shape, data: moved };
  }
  return out;
}

async function listAllTrials(api, searchId) {
  const trials = [];
  let token = '';
  do {
    const page = await api.unary('ListTrials', { search_id: searchId, page_size: 3, page_token: token });
    trials.push(...page.trials);
    token = page.next_page_token;
  } while (token);
  return trials;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const api = loadClient(args.server, args.token);
  const search = await api.unary('GetSearch', { search_id: args.search });
  const cycles = [];
  for (let cycle = 0; cycle < args.cycles; cycle++) {
    const { trials } = await api.unary('SuggestTrials', { search_id: search.id, count: 1, worker_id: args.workerId });
    const [trial] = trials;
    const architecture = JSON.parse(trial.architecture_json);
    const initial = await download(api, trial.id, 'INITIAL');
    const tensors = safetensors.parse(initial);
    checkAgainstArchitecture(tensors, architecture);
    // A round trip through this encoder gives back the server's bytes exactly.
    if (!safetensors.encode(tensors).equals(initial)) throw new Error('safetensors re-encoding differs');
    await api.unary('Heartbeat', { trial_id: trial.id });
    const trained = safetensors.encode(perturb(tensors, cycle));
    const score = 0.5 + 0.01 * cycle + 0.001 * (Number(trial.num_params) % 7);
    const progress = await api.unary('ReportProgress', { trial_id: trial.id, step: 0, value: score, name: '' });
    if (progress.should_stop) throw new Error('the server asked to stop an active trial');
    const chunked = cycle % 2 === 1;
    const report = { trial_id: trial.id, state: 'COMPLETED', score, worker_id: args.workerId };
    if (chunked) {
      const uploaded = await upload(api, trial.id, trained);
      if (uploaded.sha256 !== sha256(trained)) throw new Error('UploadWeights answered another sha256');
      report.weights_sha256 = uploaded.sha256;
    } else {
      report.weights = trained;
    }
    const reported = await api.unary('ReportTrial', report);
    if (reported.state !== 'COMPLETED' || !reported.has_trained_weights) throw new Error('report not stored');
    const back = await download(api, trial.id, 'TRAINED');
    if (!back.equals(trained)) throw new Error(`trained weights of trial ${trial.number} did not round-trip`);
    cycles.push({
      trial_id: trial.id,
      number: trial.number,
      parent_id: trial.parent_id,
      operations: JSON.parse(trial.operations_json),
      initial_sha256: sha256(initial),
      trained_sha256: sha256(trained),
      upload: chunked ? 'chunks' : 'inline',
      score,
    });
    console.log(`trial ${trial.number}: ${trial.operations_json} -> score ${score.toFixed(4)} (${chunked ? 'chunks' : 'inline'})`);
  }
  const listed = await listAllTrials(api, search.id);
  const final = await api.unary('GetSearch', { search_id: search.id });
  const result = { search_id: search.id, cycles, listed: listed.length, best_trial_id: final.best_trial_id, best_score: final.best_score };
  if (args.out) fs.writeFileSync(args.out, JSON.stringify(result, null, 2));
  console.log(`${cycles.length} cycles; ${listed.length} trials listed; best ${final.best_trial_id} (${final.best_score})`);
  api.client.close();
}

main().catch((err) => {
  console.error(`worker failed: ${err.stack || err}`);
  process.exit(1);
});
