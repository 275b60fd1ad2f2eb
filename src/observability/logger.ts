import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines on stdout, as Fluent Bit reads them. Written synchronously: a log line is an event
 * (start, state change, error), never per message, so the write cost does not matter and nothing
 * is lost when the process dies right after.
 */
export function createLogger(level: string, nodeId: string): Logger {
  return pino({ level, base: { node: nodeId }, timestamp: pino.stdTimeFunctions.isoTime });
}
