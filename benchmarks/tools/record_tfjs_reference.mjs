// Record reference embeddings from TensorFlow.js itself (pure-JS CPU backend), so the
// PyTorch executor in reconstruction/networks/tfjs_graph.py can be checked against it.
//
// Driven by benchmarks/tools/record_tfjs_reference.py, which prepares the input tensors
// (raw little-endian float32 NHWC files) and a job file, then runs:
//   node benchmarks/tools/record_tfjs_reference.mjs JOB.json OUT.json
// with TFJS_DIR pointing at a scratch folder where `npm install @tensorflow/tfjs@4` was run
// (outside the repository; tfjs-node is not needed). Job format:
//   {"models": [{"name", "model_json", "output_node",
//                "inputs": [{"file", "shape": [N, H, W, C]}]}]}
// Output: {"tfjs_version", "backend", "models": {name: {"outputs": [[...], ...]}}}.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const tfjsDir = process.env.TFJS_DIR;
if (!tfjsDir) throw new Error('set TFJS_DIR to a folder with node_modules/@tensorflow/tfjs');
const require = createRequire(join(tfjsDir, 'package.json'));
const tf = require('@tensorflow/tfjs');

function loadArtifacts(modelJson) {
  const model = JSON.parse(readFileSync(modelJson, 'utf8'));
  const weightSpecs = [];
  const buffers = [];
  for (const group of model.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const path of group.paths) buffers.push(readFileSync(join(dirname(modelJson), path)));
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  return {
    modelTopology: model.modelTopology,
    format: model.format,
    generatedBy: model.generatedBy,
    convertedBy: model.convertedBy,
    signature: model.signature,
    userDefinedMetadata: model.userDefinedMetadata,
    weightSpecs,
    weightData,
  };
}

async function main() {
  const [jobPath, outPath] = process.argv.slice(2);
  await tf.setBackend('cpu');
  await tf.ready();
  const job = JSON.parse(readFileSync(jobPath, 'utf8'));
  const result = { tfjs_version: tf.version.tfjs, backend: tf.getBackend(), models: {} };
  for (const spec of job.models) {
    const model = await tf.loadGraphModel(tf.io.fromMemory(loadArtifacts(spec.model_json)));
    const outputs = [];
    for (const input of spec.inputs) {
      const raw = readFileSync(input.file);
      const values = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
      const x = tf.tensor(values, input.shape, 'float32');
      const y = model.execute(x, spec.output_node);
      const rows = y.arraySync();
      outputs.push(...rows);
      tf.dispose([x, y]);
    }
    result.models[spec.name] = { output_node: spec.output_node, outputs };
  }
  writeFileSync(outPath, JSON.stringify(result));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
