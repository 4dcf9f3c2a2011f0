'use strict';
// safetensors in plain JavaScript: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}} (offsets into the data that follows), then
// the raw little-endian tensors. morphnas weights are F32 only (see protos/morphnas/v1/morphnas.proto).

/** Parse safetensors bytes into {name: {shape, data: Float32Array}}; throws unless every tensor is F32. */
function parse(buffer) {
  if (buffer.length < 8) throw new Error('safetensors: shorter than its 8-byte header length');
  const headerLength = Number(buffer.readBigUInt64LE(0));
  if (8 + headerLength > buffer.length) throw new Error('safetensors: header runs past the end');
  const header = JSON.parse(buffer.subarray(8, 8 + headerLength).toString('utf8'));
  const dataStart = 8 + headerLength;
  const tensors = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (info.dtype !== 'F32') throw new Error(`safetensors: ${name} is ${info.dtype}, not F32`);
    const [begin, end] = info.data_offsets;
    const count = info.shape.reduce((a, b) => a * b, 1);
    if (end - begin !== 4 * count) throw new Error(`safetensors: ${name} has the wrong byte size`);
    // Copy: the buffer's offset need not be a multiple of 4, and the data is little-endian.
    const data = new Float32Array(count);
    for (let i = 0; i < count; i++) data[i] = buffer.readFloatLE(dataStart + begin + 4 * i);
    tensors[name] = { shape: info.shape, data };
  }
  return tensors;
}

/** Encode {name: {shape, data: Float32Array}} as safetensors, as morphnas writes them: tensors in
 * sorted name order, compact JSON, the header padded with spaces to a multiple of 8 bytes. */
function encode(tensors) {
  const names = Object.keys(tensors).sort();
  const entries = [];
  let offset = 0;
  for (const name of names) {
    const { shape, data } = tensors[name];
    const end = offset + 4 * data.length;
    entries.push(`${JSON.stringify(name)}:{"dtype":"F32","shape":[${shape.join(',')}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  let header = Buffer.from(`{${entries.join(',')}}`, 'utf8');
  const padding = (8 - (header.length % 8)) % 8;
  header = Buffer.concat([header, Buffer.alloc(padding, ' ')]);
  const out = Buffer.alloc(8 + header.length + offset);
  out.writeBigUInt64LE(BigInt(header.length), 0);
  header.copy(out, 8);
  let position = 8 + header.length;
  for (const name of names) {
    for (const value of tensors[name].data) {
      out.writeFloatLE(value, position);
      position += 4;
    }
  }
  return out;
}

module.exports = { parse, encode };
