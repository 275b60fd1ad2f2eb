// The journal's `journal:` section (README: configuration, journal).

import * as z from 'zod';
import { bytes, integer, nonEmpty, nullToUndefined, quantity, section, timerMs } from '../config/fields.ts';

export const ON_FULL_POLICIES = ['drop-oldest', 'reject'] as const;

export const journalConfig = section({
  path: nonEmpty().default('./data'),
  maxBytes: bytes().prefault('1GiB'),
  onFull: z.enum(ON_FULL_POLICIES).default('drop-oldest'),
  // Not a timer (records are aged against their timestamps), so no setTimeout cap.
  ttl: z.preprocess(nullToUndefined, quantity('duration', 1).optional()),
  fsync: z.boolean().default(false),
  groupCommit: section({
    maxRecords: integer(1).default(4096),
    maxDelayMs: timerMs().prefault(0),
  }),
  // Default: 16 MiB, or what memory.limit leaves for it (src/memory/budget.ts).
  maxPendingBytes: z.preprocess(nullToUndefined, bytes().optional()),
  lockWaitMs: timerMs().prefault('30s'),
  // Dead letters' own disk budget, apart from maxBytes; default a tenth of maxBytes (>= 1 MiB).
  deadLetterMaxBytes: bytes().optional(),
});
