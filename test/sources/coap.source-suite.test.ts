// The CoAP server passes the shared source suite.

import { coapDriver } from './coap-driver.ts';
import { sourceSuite } from './source-suite.ts';

sourceSuite(coapDriver);
