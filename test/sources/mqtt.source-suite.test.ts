// The embedded MQTT broker passes the shared source suite.

import { mqttDriver } from './mqtt-driver.ts';
import { sourceSuite } from './source-suite.ts';

sourceSuite(mqttDriver);
