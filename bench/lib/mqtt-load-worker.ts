// Worker-thread side of `prepareLoadInWorker`: prepare (connect), go (publish), reply.

import { serveLoad } from './load-worker.ts';
import { prepareLoad } from './mqtt-load.ts';

serveLoad(prepareLoad);
