// The `memory:` section (README: Memory limit).

import * as z from 'zod';
import { bytes, nullToUndefined, section } from '../config/fields.ts';

export const memoryConfig = section({
  // Default: the container's limit (cgroup), none outside a container. Buffers that grow with
  // load are sized from it, and intake pauses when RSS nears it (src/memory/budget.ts).
  limit: z.preprocess(nullToUndefined, bytes().optional()),
});
