// Worker-thread side of `prepareCoapLoadInWorker`: prepare (bind, connect, probe), go, reply.

import { prepareCoapLoad } from './coap-load.ts';
import { serveLoad } from './load-worker.ts';

serveLoad(prepareCoapLoad);
