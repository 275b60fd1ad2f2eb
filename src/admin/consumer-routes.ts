import { CONSUMER_NAME, type ConsumerDirectory, type ConsumerInfo } from '../core/consumers.ts';
import { HttpError } from './http-util.ts';

function consumerDoc(c: ConsumerInfo) {
  return {
    name: c.name,
    position: c.position,
    backlog: c.backlog,
    openStreams: c.openStreams,
    lastActivity: new Date(c.lastActivityAt).toISOString(),
    expiresAt: c.expiresAt === null ? null : new Date(c.expiresAt).toISOString(),
  };
}

function directory(consumers: ConsumerDirectory | null | undefined): ConsumerDirectory {
  if (!consumers) throw new HttpError(404, 'the gRPC API is disabled (grpc.enabled: false): no consumers');
  return consumers;
}

function checkName(name: string): string {
  if (!CONSUMER_NAME.test(name)) {
    throw new HttpError(400, `consumer name: must match [A-Za-z0-9_.-]{1,128} (got ${JSON.stringify(name)})`);
  }
  return name;
}

/** `GET /v1/consumers`: every durable consumer, from memory. */
export function listConsumers(consumers: ConsumerDirectory | null | undefined) {
  return { consumers: directory(consumers).list().map(consumerDoc) };
}

/** `GET /v1/consumers/<name>`. */
export function getConsumer(consumers: ConsumerDirectory | null | undefined, name: string) {
  checkName(name);
  const c = directory(consumers)
    .list()
    .find((x) => x.name === name);
  if (!c) throw new HttpError(404, `no durable consumer named ${JSON.stringify(name)}`);
  return consumerDoc(c);
}

/** `DELETE /v1/consumers/<name>`: forgets its position and ends its open streams. */
export async function deleteConsumer(consumers: ConsumerDirectory | null | undefined, name: string) {
  checkName(name);
  const res = await directory(consumers).delete(name);
  if (!res) throw new HttpError(404, `no durable consumer named ${JSON.stringify(name)}`);
  return { deleted: name, endedStreams: res.endedStreams };
}
