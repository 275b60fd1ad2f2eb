// Every scenario the runner knows, in the order `npm run bench` runs the default ones. Later
// scenarios are added here.

import type { Scenario } from '../lib/scenario.ts';
import { backlog1m } from './backlog-1m.ts';
import { coap } from './coap.ts';
import { grpcSink } from './grpc-sink.ts';
import { loadgenCeiling } from './loadgen-ceiling.ts';
import { modbus } from './modbus.ts';
import { mqttBridge } from './mqtt-bridge.ts';
import { mqttClient } from './mqtt-client.ts';
import { mqttQos0 } from './mqtt-qos0.ts';
import { mqttQos1, mqttQos1Single } from './mqtt-qos1.ts';
import { mqttQos1Paced } from './mqtt-qos1-paced.ts';
import { mqttQos1Tls } from './mqtt-qos1-tls.ts';
import { outageDrain } from './outage-drain.ts';

export const scenarios: Scenario[] = [
  loadgenCeiling,
  mqttQos1,
  mqttQos1Single,
  mqttQos0,
  mqttQos1Paced,
  grpcSink,
  mqttBridge,
  outageDrain,
  backlog1m,
  coap,
  modbus,
  mqttClient,
  mqttQos1Tls,
];
