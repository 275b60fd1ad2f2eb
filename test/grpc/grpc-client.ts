// A Gateway client built the way an in-cluster app would: from the published .proto files.

import { type ChannelCredentials, credentials, loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { PROTO_ROOT } from '../../src/api/grpc/proto.ts';

export interface StreamedRecord {
  seq: number;
  id: string;
  ts: number;
  source: string;
  device: string;
  topic: string;
  payload: Buffer;
  contentType: string;
}

// biome-ignore lint/suspicious/noExplicitAny: generated-at-runtime client
export type GatewayClient = any;

export function gatewayClient(
  target: string,
  creds: ChannelCredentials = credentials.createInsecure(),
  options: object = {},
): GatewayClient {
  const def = loadSync('edgeferry/v1/gateway.proto', {
    includeDirs: [PROTO_ROOT],
    longs: Number,
    enums: String,
    defaults: true,
  });
  // biome-ignore lint/suspicious/noExplicitAny: generated-at-runtime client
  const pkg = loadPackageDefinition(def) as any;
  return new pkg.edgeferry.v1.Gateway(target, creds, options);
}

export function healthClient(
  target: string,
  creds: ChannelCredentials = credentials.createInsecure(),
): GatewayClient {
  const def = loadSync('health.proto', {
    includeDirs: [new URL('../../node_modules/grpc-health-check/proto/health/v1', import.meta.url).pathname],
    enums: String,
    defaults: true,
  });
  // biome-ignore lint/suspicious/noExplicitAny: generated-at-runtime client
  const pkg = loadPackageDefinition(def) as any;
  return new pkg.grpc.health.v1.Health(target, creds);
}

export interface CommandReply {
  code: string;
  payload: Buffer;
  contentType: string;
}

/** Gateway.Command; rejects with the gRPC error (`code`, `details`). */
export function sendCommand(client: GatewayClient, req: object, deadlineMs = 10_000): Promise<CommandReply> {
  return new Promise((resolve, reject) =>
    client.Command(req, { deadline: Date.now() + deadlineMs }, (err: Error | null, res: CommandReply) =>
      err ? reject(err) : resolve(res),
    ),
  );
}
