import { collectDefaultMetrics, Registry } from 'prom-client';
import type { GatewayView } from './gateway-view.ts';
import { sinkReports } from './gateway-view.ts';
import { memoryMetrics } from './memory-metrics.ts';
import { modbusMetrics } from './modbus-metrics.ts';
import { type Sample, SampledMetric } from './sampled-metric.ts';

const SINK_STATES = ['up', 'backoff', 'auth-failing', 'stalled', 'starting', 'stopped'];
const COAP_STATES = ['starting', 'observing', 'polling', 'retrying', 'stopped'];

interface CoapResourceSample {
  device: string;
  resource: string;
  state: string;
  notifications: number;
  errors: number;
  lastNotificationAt: number | null;
}

/** Per device sums of a per-resource count. */
function sumBy(rs: CoapResourceSample[], field: 'notifications' | 'errors'): Sample[] {
  const by = new Map<string, number>();
  for (const r of rs) by.set(r.device, (by.get(r.device) ?? 0) + r[field]);
  return [...by].map(([device, value]) => ({ labels: { device }, value }));
}

/** The Prometheus registry: process metrics plus gateway metrics sampled at scrape time. */
export function createMetricsRegistry(view: GatewayView): Registry {
  const reg = new Registry();
  collectDefaultMetrics({ register: reg, prefix: 'edgeferry_' });
  const add = (
    name: string,
    help: string,
    type: 'counter' | 'gauge',
    sample: () => Sample[] | Promise<Sample[]>,
  ) => reg.registerMetric(new SampledMetric(name, help, type, sample) as never);

  const perSource = (field: string) => () =>
    view.sources.map((s) => ({
      labels: { protocol: s.name },
      value: (s.counters as Record<string, number>)[field] ?? 0,
    }));
  add(
    'edgeferry_ingress_records_total',
    'Records received from devices, by protocol.',
    'counter',
    perSource('received'),
  );
  add(
    'edgeferry_ingress_refused_total',
    'Records refused (journal full or write failure): never acknowledged.',
    'counter',
    perSource('refused'),
  );
  add(
    'edgeferry_ingress_protocol_errors_total',
    'Connections closed for malformed or oversize packets.',
    'counter',
    perSource('protocolErrors'),
  );
  add(
    'edgeferry_ingress_pauses_total',
    'Times intake stopped reading devices because too much waited for the journal commit.',
    'counter',
    perSource('pauses'),
  );

  // The embedded broker's own bounds (README: MQTT broker bounds).
  const mqtt = (field: string) => () => {
    const s = view.sources.find((x) => x.name === 'mqtt');
    return s ? [{ labels: {}, value: (s.counters as Record<string, number>)[field] ?? 0 }] : [];
  };
  add(
    'edgeferry_mqtt_slow_subscriber_disconnects_total',
    'MQTT subscribers disconnected because a QoS 1/2 message found maxQueuedMessages or maxQueuedBytes waiting in their socket.',
    'counter',
    mqtt('slowSubscriberDisconnects'),
  );
  add(
    'edgeferry_mqtt_slow_subscriber_dropped_total',
    'QoS 0 messages not sent to an MQTT subscriber whose socket queue was full.',
    'counter',
    mqtt('slowSubscriberDropped'),
  );
  add(
    'edgeferry_mqtt_session_dropped_total',
    'QoS 1/2 messages no longer kept for a redelivery, oldest first, past maxQueuedMessages/Bytes (per session or total): queued for a clean: false client that is away, or sent to a connected one and not yet acknowledged.',
    'counter',
    mqtt('sessionDropped'),
  );
  add(
    'edgeferry_mqtt_queued_messages',
    'Messages the MQTT broker holds for clean: false sessions (away, or sent and not yet acknowledged).',
    'gauge',
    mqtt('queuedMessages'),
  );
  add(
    'edgeferry_mqtt_retained_dropped_total',
    'Retained MQTT messages dropped, oldest stored first, past maxRetainedMessages/Bytes.',
    'counter',
    mqtt('retainedDropped'),
  );
  add('edgeferry_mqtt_retained_messages', 'Retained MQTT messages held.', 'gauge', mqtt('retainedMessages'));
  add(
    'edgeferry_mqtt_qos2_duplicates_total',
    'Resent QoS 2 PUBLISH packets (same packet id, before PUBREL) acknowledged but not journaled again.',
    'counter',
    mqtt('qos2Duplicates'),
  );
  add(
    'edgeferry_mqtt_limit_hits_total',
    'MQTT broker limits hit (README: MQTT broker limits), by limit: connections closed at accept (connections), publishes over the rate (rate), connections closed for a topic or filter too long or too deep (topic), connections paused at maxInflight (inflight).',
    'counter',
    () => {
      const c = view.sources.find((x) => x.name === 'mqtt')?.counters as Record<string, number> | undefined;
      if (!c) return [];
      return (['connections', 'rate', 'topic', 'inflight'] as const).map((limit) => ({
        labels: { limit },
        value: c[`limit${limit[0].toUpperCase()}${limit.slice(1)}`] ?? 0,
      }));
    },
  );

  add(
    'edgeferry_tls_reloads_total',
    'Rotated TLS files taken into use (result="reloaded") or refused as broken, the previous ones kept (result="refused"), by component (grpc, sink/<name>).',
    'counter',
    () =>
      (view.tls ?? []).flatMap(({ component, counters }) => [
        { labels: { component, result: 'reloaded' }, value: counters.reloads },
        { labels: { component, result: 'refused' }, value: counters.reloadErrors },
      ]),
  );

  // Device security (README: Securing device access).
  const mqttBy = (label: string, fields: Record<string, string>) => () => {
    const s = view.sources.find((x) => x.name === 'mqtt');
    const c = (s?.counters ?? {}) as Record<string, number>;
    return s ? Object.entries(fields).map(([v, f]) => ({ labels: { [label]: v }, value: c[f] ?? 0 })) : [];
  };
  add(
    'edgeferry_mqtt_auth_refused_total',
    'MQTT connections refused: bad-credentials (CONNACK 4), not-authorized (CONNACK 5), busy (CONNACK 3: too many password checks at once), tls (failed handshake or certificate).',
    'counter',
    mqttBy('reason', {
      'bad-credentials': 'authBadCredentials',
      'not-authorized': 'authNotAuthorized',
      busy: 'authBusy',
      tls: 'tlsRefused',
    }),
  );
  add(
    'edgeferry_mqtt_acl_denied_total',
    'MQTT operations outside the ACL: publish (acknowledged, not journaled), subscribe (SUBACK 0x80).',
    'counter',
    mqttBy('action', { publish: 'aclPublishDenied', subscribe: 'aclSubscribeDenied' }),
  );
  add(
    'edgeferry_mqtt_tls_reloads_total',
    'Changes of the MQTT TLS certificate files: ok (new handshakes use them), error (refused, the old ones kept).',
    'counter',
    mqttBy('result', { ok: 'tlsReloads', error: 'tlsReloadErrors' }),
  );
  add(
    'edgeferry_mqtt_protocol_errors_total',
    'MQTT connections closed for breaking a rule of MQTT 3.1.1, by rule (the normative statement, e.g. MQTT-1.5.3-1).',
    'counter',
    () => {
      const s = view.sources.find((x) => x.name === 'mqtt');
      const rules = (s?.counters as { protocolErrorRules?: Record<string, number> } | undefined)
        ?.protocolErrorRules;
      return Object.entries(rules ?? {}).map(([rule, value]) => ({ labels: { rule }, value }));
    },
  );

  // The MQTT client source (README: My site already has a broker).
  const mqttClient = (value: (c: Record<string, unknown>) => number) => () => {
    const s = view.sources.find((x) => x.name === 'mqtt-client');
    return s ? [{ labels: {}, value: value(s.counters as Record<string, unknown>) }] : [];
  };
  add(
    'edgeferry_mqtt_client_connected',
    '1 while the MQTT client source is connected to its broker.',
    'gauge',
    mqttClient((c) => (c.state === 'connected' ? 1 : 0)),
  );
  add(
    'edgeferry_mqtt_client_reconnects_total',
    'Connection attempts of the MQTT client source after a failure or a lost connection.',
    'counter',
    mqttClient((c) => c.reconnects as number),
  );
  add(
    'edgeferry_mqtt_client_loop_dropped_total',
    'Messages from the site broker acknowledged but not journaled by the loop rule (published by our own bridge).',
    'counter',
    mqttClient((c) => c.loopDropped as number),
  );

  // The CoAP server (README: CoAP).
  const coap = (field: string) => () => {
    const s = view.sources.find((x) => x.name === 'coap');
    return s ? [{ labels: {}, value: (s.counters as Record<string, number>)[field] ?? 0 }] : [];
  };
  add(
    'edgeferry_coap_requests_total',
    'CoAP requests answered, by method and response code.',
    'counter',
    () => {
      const s = view.sources.find((x) => x.name === 'coap');
      const byKey = (s?.counters as { requests?: Record<string, number> } | undefined)?.requests ?? {};
      return Object.entries(byKey).map(([k, value]) => {
        const [method, code] = k.split(' ');
        return { labels: { method, code }, value };
      });
    },
  );
  add(
    'edgeferry_coap_malformed_total',
    'Datagrams that are not CoAP messages (RFC 7252 §3): dropped, or reset for a CON.',
    'counter',
    coap('malformed'),
  );
  add(
    'edgeferry_coap_duplicates_total',
    'Retransmitted CoAP requests (same peer and message id) answered again without journaling (RFC 7252 §4.5).',
    'counter',
    coap('duplicates'),
  );
  add(
    'edgeferry_coap_busy_total',
    'CoAP requests answered 5.03 with Max-Age while the journal was saturated.',
    'counter',
    coap('busy'),
  );
  // The CoAP observer's resources (README: CoAP devices).
  const coapResources = () => {
    const s = view.sources.find((x) => x.name === 'coap-observer');
    return ((s?.counters as { resources?: CoapResourceSample[] } | undefined)?.resources ??
      []) as CoapResourceSample[];
  };
  add('edgeferry_coap_observed_resources', 'CoAP device resources by state.', 'gauge', () => {
    const rs = coapResources();
    return COAP_STATES.map((state) => ({
      labels: { state },
      value: rs.filter((r) => r.state === state).length,
    }));
  });
  add(
    'edgeferry_coap_notifications_total',
    'Representations received from CoAP devices (2.xx notifications and poll responses).',
    'counter',
    () => sumBy(coapResources(), 'notifications'),
  );
  add(
    'edgeferry_coap_errors_total',
    'Failed registrations, polls and error notifications of CoAP devices.',
    'counter',
    () => sumBy(coapResources(), 'errors'),
  );
  add(
    'edgeferry_coap_last_notification_age_seconds',
    'Seconds since the last representation from each CoAP device resource (absent before the first).',
    'gauge',
    () => {
      const now = Date.now();
      return coapResources()
        .filter((r) => r.lastNotificationAt !== null)
        .map((r) => ({
          labels: { device: r.device, resource: r.resource },
          value: (now - (r.lastNotificationAt as number)) / 1000,
        }));
    },
  );

  const j = (f: (journal: NonNullable<GatewayView['journal']>) => Sample[]) => () =>
    view.journal ? f(view.journal) : [];
  const one = (value: number): Sample[] => [{ labels: {}, value }];
  add(
    'edgeferry_journal_records',
    'Records retained in the journal.',
    'gauge',
    j((x) => one(x.records)),
  );
  add(
    'edgeferry_journal_bytes',
    'Bytes of retained records (keys and values).',
    'gauge',
    j((x) => one(x.bytes())),
  );
  add(
    'edgeferry_journal_max_bytes',
    'Disk budget of the journal.',
    'gauge',
    j((x) => one(x.maxBytes)),
  );
  add(
    'edgeferry_journal_appended_total',
    'Records committed to the journal.',
    'counter',
    j((x) => one(x.counters.appended)),
  );
  add(
    'edgeferry_journal_commits_total',
    'Group commits (LevelDB batches).',
    'counter',
    j((x) => one(x.counters.committedBatches)),
  );
  add(
    'edgeferry_journal_dropped_total',
    'Records dropped without delivery, by reason.',
    'counter',
    j((x) => [
      { labels: { reason: 'full' }, value: x.counters.droppedFull },
      { labels: { reason: 'ttl' }, value: x.counters.droppedTtl },
      { labels: { reason: 'corrupt' }, value: x.counters.corrupt },
    ]),
  );
  add(
    'edgeferry_journal_rejected_total',
    'Appends refused because the journal was full under onFull: reject.',
    'counter',
    j((x) => one(x.counters.rejected)),
  );
  add(
    'edgeferry_journal_writable',
    '1 while the journal accepts records; 0 while it refuses them until its database is reopened after a write error (a full disk).',
    'gauge',
    j((x) => one(x.writable ? 1 : 0)),
  );
  add(
    'edgeferry_journal_reopened_total',
    'Reopens of the journal database after a failed write.',
    'counter',
    j((x) => one(x.counters.reopened)),
  );
  add(
    'edgeferry_journal_write_errors_total',
    'Journal writes that failed (group commits, dead letters, cursor moves, range deletes).',
    'counter',
    j((x) => one(x.counters.writeErrors)),
  );
  add(
    'edgeferry_journal_quarantined_total',
    'Journals moved aside at start-up because their files were damaged.',
    'counter',
    j((x) => one(x.counters.quarantined)),
  );
  add(
    'edgeferry_journal_dead_lettered_total',
    'Records moved to the dead-letter space.',
    'counter',
    j((x) => one(x.counters.deadLettered)),
  );
  add(
    'edgeferry_journal_dead_letter_bytes',
    'Bytes the dead letters take on disk (their budget is journal.deadLetterMaxBytes).',
    'gauge',
    j((x) => one(x.deadLetterBytes)),
  );
  add(
    'edgeferry_journal_dead_letters_dropped_total',
    'Dead letters dropped, oldest first, to stay within journal.deadLetterMaxBytes.',
    'counter',
    j((x) => one(x.counters.deadLettersDropped)),
  );
  add(
    'edgeferry_journal_clock_jumps_total',
    'Wall-clock jumps seen; TTL ages the records already kept by the time they spent here.',
    'counter',
    j((x) => one(x.counters.clockJumps)),
  );

  const perSink =
    (
      field:
        | 'backlog'
        | 'delivered'
        | 'retries'
        | 'deadLettered'
        | 'expired'
        | 'drainRate'
        | 'oldestUndeliveredAgeSeconds'
        | 'secondsSinceLastSuccess',
    ) =>
    async () =>
      (await sinkReports(view))
        .filter((r) => r[field] !== null)
        .map((r) => ({ labels: { sink: r.name }, value: r[field] as number }));
  add(
    'edgeferry_sink_backlog_records',
    'Records between the sink cursor and the newest committed record.',
    'gauge',
    perSink('backlog'),
  );
  add(
    'edgeferry_sink_delivered_total',
    'Records the upstream acknowledged.',
    'counter',
    perSink('delivered'),
  );
  add('edgeferry_sink_retries_total', 'Failed sends that were retried.', 'counter', perSink('retries'));
  add(
    'edgeferry_sink_dead_lettered_total',
    'Records the upstream refused for good (dead-lettered).',
    'counter',
    perSink('deadLettered'),
  );
  add(
    'edgeferry_sink_expired_total',
    'Records skipped because they passed their TTL.',
    'counter',
    perSink('expired'),
  );
  add('edgeferry_sink_drain_rate', 'Records per second delivered, smoothed.', 'gauge', perSink('drainRate'));
  add(
    'edgeferry_sink_oldest_undelivered_age_seconds',
    'Age of the oldest record the sink has not delivered.',
    'gauge',
    perSink('oldestUndeliveredAgeSeconds'),
  );
  add(
    'edgeferry_sink_last_success_age_seconds',
    'Seconds since the last successful delivery.',
    'gauge',
    perSink('secondsSinceLastSuccess'),
  );
  add('edgeferry_sink_state', 'Sink state: 1 for the current one.', 'gauge', async () =>
    (await sinkReports(view)).flatMap((r) =>
      SINK_STATES.map((state) => ({ labels: { sink: r.name, state }, value: r.state === state ? 1 : 0 })),
    ),
  );
  add('edgeferry_grpc_consumers', 'Durable consumers of the gRPC API.', 'gauge', () =>
    view.consumers ? one(view.consumers.list().length) : [],
  );
  add(
    'edgeferry_grpc_consumers_removed_total',
    'Durable consumers removed: expired (no stream and no Ack for grpc.consumers.expireAfter) or deleted by an operator.',
    'counter',
    () => {
      const r = view.consumers?.removed;
      return r
        ? [
            { labels: { reason: 'expired' }, value: r.expired },
            { labels: { reason: 'deleted' }, value: r.deleted },
          ]
        : [];
    },
  );
  for (const m of modbusMetrics(view)) reg.registerMetric(m as never);
  for (const m of memoryMetrics(view)) reg.registerMetric(m as never);
  return reg;
}
