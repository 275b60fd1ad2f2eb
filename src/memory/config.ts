// The `memory:` section (README: Memory limit), and the check that spans the limit and every
// buffer it sizes: with `memory.limit` set, settings that together cannot fit it are errors naming
// each of them. (A limit found in the cgroup is checked the same way at start-up: src/cli.ts.)

import * as z from 'zod';
import { bytes, nullToUndefined, section } from '../config/fields.ts';
import { deriveBudget } from './budget.ts';
import { type BudgetedConfig, explicitSettings } from './plan.ts';

export const memoryConfig = section({
  // Default: the container's limit (cgroup), none outside a container. Buffers that grow with
  // load are sized from it, and intake pauses when RSS nears it (src/memory/budget.ts).
  limit: z.preprocess(nullToUndefined, bytes().optional()),
});

export function checkMemoryBudget(c: BudgetedConfig, ctx: z.RefinementCtx): void {
  if (c.memory.limit === undefined) return;
  const { problems } = deriveBudget(c.memory.limit, 'config', explicitSettings(c));
  for (const p of problems)
    ctx.addIssue({ code: 'custom', path: p.path, message: p.message, input: undefined });
}
