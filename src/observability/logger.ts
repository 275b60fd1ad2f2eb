import pino, { type Logger as PinoLogger } from 'pino';

/**
 * The process's root logger. Components take the narrower `Logger` of src/core/logger.ts (which a
 * pino child satisfies); only the composition root needs pino's own type, for `child()`.
 */
export type RootLogger = PinoLogger;

/**
 * JSON lines on stdout, as Fluent Bit reads them. Written synchronously: a log line is an event
 * (start, state change, error), never per message, so the write cost does not matter and nothing
 * is lost when the process dies right after.
 */
export function createLogger(level: string, nodeId: string): RootLogger {
  return pino({ level, base: { node: nodeId }, timestamp: pino.stdTimeFunctions.isoTime });
}
