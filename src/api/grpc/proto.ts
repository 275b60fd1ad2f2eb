import { fileURLToPath } from 'node:url';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

/** The include root of the versioned contracts: `edgeferry/v1/*.proto` live under it. */
export const PROTO_ROOT = fileURLToPath(new URL('../../../protocols/grpc', import.meta.url));

const LOADER_OPTIONS = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

/** Loads a service definition of `edgeferry.v1` from its .proto file (camelCase fields, numbers for uint64). */
export function loadService(file: string, service: string): ServiceDefinition {
  const pkg = loadSync(file, LOADER_OPTIONS);
  return pkg[`edgeferry.v1.${service}`] as unknown as ServiceDefinition;
}
