import { contentFormatName } from '../../core/content-format.ts';

/** The record's contentType for a Content-Format option value; undefined when there was none (-1). */
export function contentTypeOf(format: number): string | undefined {
  return format < 0 ? undefined : contentFormatName(format);
}

/** The formats `/.well-known/core` advertises for the telemetry resource (any is accepted). */
export const ADVERTISED_FORMATS = [0, 42, 50, 60, 110, 112];
