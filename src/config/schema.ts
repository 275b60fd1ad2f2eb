// The configuration schema: the single source of the YAML shape, its defaults and the parsed
// `Config` type. Objects are strict so a misspelt key fails loudly instead of silently falling
// back to its default. Messages are written to be shown as `<dotted.path>: <message>`.

import os from 'node:os';
import * as z from 'zod';
import { adminConfig } from '../admin/config.ts';
import { grpcApiConfig } from '../api/grpc/config.ts';
import { journalConfig } from '../journal/config.ts';
import { checkMemoryBudget, memoryConfig } from '../memory/config.ts';
import { grpcSinkConfig } from '../sinks/grpc/config.ts';
import { httpSinkConfig } from '../sinks/http/config.ts';
import { mqttSinkConfig } from '../sinks/mqtt/config.ts';
import { coapDevicesConfig } from '../sources/coap-observer/config.ts';
import { coapServerConfigShape } from '../sources/coap-server/config.ts';
import { modbusConfig } from '../sources/modbus/config.ts';
import { mqttConfig } from '../sources/mqtt-broker/config.ts';
import { mqttClientConfig } from '../sources/mqtt-client/config.ts';
import {
  describeValue,
  isRecord,
  nonEmpty,
  nullToUndefined,
  section,
  timerMs,
  uniqueNames,
} from './fields.ts';
import { checkMqttBrokers } from './mqtt-brokers.ts';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

// A union on `type`: each sink kind slots in as one option.
const sink = z.discriminatedUnion('type', [httpSinkConfig, grpcSinkConfig, mqttSinkConfig], {
  error: (iss) => {
    if (iss.code !== 'invalid_union' || !('options' in iss)) return undefined;
    const options = (iss.options as unknown[]).join('|');
    const type = isRecord(iss.input) ? iss.input.type : undefined;
    return type === undefined
      ? `required (one of ${options})`
      : `expected one of ${options} (got ${describeValue(type)})`;
  },
});

// Names key delivery cursors and metrics, so two sinks must never share one.
const sinks = z.preprocess(
  nullToUndefined,
  uniqueNames(sink, 'sink', 'sinks').default(() => []),
);

export const configSchema = z.preprocess(
  nullToUndefined,
  z
    .strictObject({
      node: section({ id: nonEmpty().default(() => os.hostname()) }),
      journal: journalConfig,
      // CoAP (RFC 7252): the server devices POST/PUT telemetry to, and the southbound devices the
      // gateway observes and sends commands to.
      coap: section({ ...coapServerConfigShape, devices: coapDevicesConfig }),
      mqtt: mqttConfig,
      // The site's own MQTT broker, subscribed to as a client (off while url is unset).
      mqttClient: mqttClientConfig,
      // Modbus TCP: PLCs polled through register maps, written through Gateway.Command.
      modbus: modbusConfig,
      admin: adminConfig,
      grpc: grpcApiConfig,
      log: section({ level: z.enum(LOG_LEVELS).default('info') }),
      memory: memoryConfig,
      shutdown: section({ drainTimeoutMs: timerMs().prefault('10s') }),
      sinks,
    })
    // Gateway.Command addresses a device by name alone, whatever its protocol.
    .superRefine((c, ctx) => {
      const coap = new Set(c.coap.devices.map((d) => d.name));
      c.modbus.devices.forEach((d, i) => {
        if (coap.has(d.name))
          ctx.addIssue({
            code: 'custom',
            path: ['modbus', 'devices', i, 'name'],
            message: `duplicate device name ${describeValue(d.name)} (also a coap.devices name)`,
            input: d.name,
          });
      });
      checkMqttBrokers(c, ctx);
      checkMemoryBudget(c, ctx);
    })
    .prefault({}),
);

/** The parsed configuration: defaults filled in, byte sizes in bytes, durations in ms. */
export type Config = z.output<typeof configSchema>;
export type SinkConfig = Config['sinks'][number];
export type HttpSinkConfig = Extract<SinkConfig, { type: 'http' }>;
export type GrpcSinkConfig = Extract<SinkConfig, { type: 'grpc' }>;
export type MqttSinkConfig = Extract<SinkConfig, { type: 'mqtt' }>;
export type CoapConfig = Config['coap'];
export type CoapDeviceConfig = CoapConfig['devices'][number];
export type { ModbusConfig, ModbusDeviceConfig } from '../sources/modbus/config.ts';
export type { MqttClientConfig } from '../sources/mqtt-client/config.ts';
export type LogLevel = Config['log']['level'];
