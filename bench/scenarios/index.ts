// Every scenario the runner knows, in the order `npm run bench` runs the default ones. Later
// scenarios (mqtt-qos0, outage-drain, backlog-1m, coap, modbus, grpc-sink) are added here.

import type { Scenario } from '../lib/scenario.ts';
import { loadgenCeiling } from './loadgen-ceiling.ts';
import { mqttQos1, mqttQos1Single } from './mqtt-qos1.ts';

export const scenarios: Scenario[] = [loadgenCeiling, mqttQos1, mqttQos1Single];
