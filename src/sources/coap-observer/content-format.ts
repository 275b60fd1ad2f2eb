import { contentFormatName, contentFormatNumber } from '../../core/content-format.ts';

/** The record's contentType for a Content-Format; '' when the device sent none. */
export function mediaTypeOf(format: number | undefined): string {
  return format === undefined ? '' : contentFormatName(format);
}

/** The Content-Format for a command's content type (see contentFormatNumber). */
export const formatOf = contentFormatNumber;
