'use strict';
// Shape inference for the morphnas architecture format (docs/architecture-format.md): the output
// shape of every layer and the weight tensors the safetensors file must hold, with their shapes.
// Shapes are channel-first, without the batch axis: [C, H, W], [C, L] or [D].

function outputShape(layer, inputs) {
  const [first] = inputs;
  const spatial = first.slice(1);
  switch (layer.kind) {
    case 'conv': // zero padding kernel // 2: out = floor((n - 1) / stride) + 1
      return [layer.units, ...spatial.map((n) => Math.floor((n - 1) / layer.stride) + 1)];
    case 'maxpool':
    case 'avgpool': // no padding: out = floor((n - kernel) / stride) + 1
      return [first[0], ...spatial.map((n) => Math.floor((n - layer.kernel) / layer.stride) + 1)];
    case 'dense':
      return [layer.units];
    case 'gap':
      return [first[0]];
    case 'flatten':
      return [first.reduce((a, b) => a * b, 1)];
    case 'concat':
      return [inputs.reduce((sum, shape) => sum + shape[0], 0), ...spatial];
    case 'bn':
    case 'relu':
    case 'dropout':
    case 'add':
      return first;
    default:
      throw new Error(`unknown layer kind ${layer.kind}`);
  }
}

function weightShapes(layer, inputs) {
  const [first] = inputs;
  const channels = first[0];
  switch (layer.kind) {
    case 'conv': // PyTorch layout [out, in, k] or [out, in, k, k]
      return {
        weight: [layer.units, channels, ...first.slice(1).map(() => layer.kernel)],
        bias: [layer.units],
      };
    case 'dense': // [out, in]
      return { weight: [layer.units, channels], bias: [layer.units] };
    case 'bn':
      return { weight: [channels], bias: [channels], running_mean: [channels], running_var: [channels] };
    default:
      return {};
  }
}

/** {tensor name: shape} for an architecture (the parsed architecture_json). */
function expectedTensors(architecture) {
  const shapes = { input: architecture.input_shape };
  const tensors = {};
  for (const layer of architecture.layers) {
    const inputs = layer.inputs.map((name) => shapes[name]);
    shapes[layer.name] = outputShape(layer, inputs);
    for (const [suffix, shape] of Object.entries(weightShapes(layer, inputs))) {
      tensors[`${layer.name}.${suffix}`] = shape;
    }
  }
  return tensors;
}

module.exports = { expectedTensors, outputShape };
