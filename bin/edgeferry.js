#!/usr/bin/env node
// Node >= 22.18 strips TypeScript types natively, so the sources run as they are: no build step.
import '../src/cli.ts';
