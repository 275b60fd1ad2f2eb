// The config check that spans the memory limit and every buffer it sizes: with `memory.limit`
// set, settings that together cannot fit it are errors naming each of them. (A limit found in
// the cgroup is checked the same way at start-up: src/cli.ts.)

import type * as z from 'zod';
import { deriveBudget } from '../memory/budget.ts';
import { type BudgetedConfig, explicitSettings } from '../memory/plan.ts';

export function checkMemoryBudget(c: BudgetedConfig, ctx: z.RefinementCtx): void {
  if (c.memory.limit === undefined) return;
  const { problems } = deriveBudget(c.memory.limit, 'config', explicitSettings(c));
  for (const p of problems)
    ctx.addIssue({ code: 'custom', path: p.path, message: p.message, input: undefined });
}
