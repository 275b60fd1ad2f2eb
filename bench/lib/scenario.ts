// What a scenario is to the runner. A scenario module exports one or more of these and is
// listed in bench/scenarios/index.ts.

import type { BenchEnv } from './env.ts';
import type { ScenarioOutcome } from './report.ts';

export interface ScenarioContext {
  env: BenchEnv;
  /** Progress line on stderr (the tables go to stdout). */
  log(msg: string): void;
}

export interface Scenario {
  name: string;
  description: string;
  /** Part of a plain `npm run bench`; others run only when named. */
  default: boolean;
  run(ctx: ScenarioContext): Promise<ScenarioOutcome>;
}
