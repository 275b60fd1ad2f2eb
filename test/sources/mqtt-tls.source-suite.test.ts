// The embedded MQTT broker passes the shared source suite over its TLS listener too.

import { mqttTlsDriver } from './mqtt-tls-driver.ts';
import { sourceSuite } from './source-suite.ts';

sourceSuite(mqttTlsDriver);
