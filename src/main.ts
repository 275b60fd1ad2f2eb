// The composition root: the one module that knows every source, sink and api, and wires them to
// the journal and the dispatchers. Each of them is imported when the config enables it, not up
// front: a module once loaded stays resident (its code, and its source text for lazy compiling),
// so a gateway without a gRPC sink or API never pays for grpc-js and protobufjs, one without an
// HTTP sink never for undici.

import type { AdminServer } from './admin/admin-server.ts';
import type { GatewayGrpcServer } from './api/grpc/gateway-server.ts';
import { bridgeLoop } from './config/mqtt-brokers.ts';
import type { Config } from './config/schema.ts';
import { compactHeap } from './core/compact-heap.ts';
import { CommandRouter, type Sink, type SinkContext, type Source } from './core/pipeline.ts';
import { SinkDispatcher } from './dispatch/sink-dispatcher.ts';
import { Journal } from './journal/journal.ts';
import { mib } from './memory/budget.ts';
import { MemoryGuard } from './memory/guard.ts';
import { IdleCompaction } from './memory/idle-compaction.ts';
import { type MemoryPlan, planMemory } from './memory/plan.ts';
import type { GatewayView } from './observability/gateway-view.ts';
import type { RootLogger } from './observability/logger.ts';
import type { MqttBrokerSource } from './sources/mqtt-broker/mqtt-broker-source.ts';

type SinkConfig = Config['sinks'][number];
type SinkFactory<K extends SinkConfig['type']> = () => Promise<{
  createSink(cfg: Extract<SinkConfig, { type: K }>, ctx: SinkContext): Sink;
}>;

/** Sink kinds by `type`: each folder owns its config schema (config.ts) and its factory. */
const SINKS: { [K in SinkConfig['type']]: SinkFactory<K> } = {
  http: () => import('./sinks/http/factory.ts'),
  grpc: () => import('./sinks/grpc/factory.ts'),
  mqtt: () => import('./sinks/mqtt/factory.ts'),
};

async function createSink(cfg: SinkConfig, ctx: SinkContext): Promise<Sink> {
  const factory = await (SINKS[cfg.type] as SinkFactory<SinkConfig['type']>)();
  return factory.createSink(cfg as never, ctx);
}

export class Gateway {
  readonly view: GatewayView;
  private readonly config: Config;
  private readonly log: RootLogger;
  private journal: Journal | null = null;
  private readonly sources: (Source & { counters: object })[] = [];
  private readonly dispatchers: SinkDispatcher[] = [];
  private admin: AdminServer | null = null;
  private grpc: GatewayGrpcServer | null = null;
  private idleCompaction: IdleCompaction | null = null;
  private listening = false;
  private stopping: Promise<void> | null = null;
  private plan: MemoryPlan | null;
  private guard: MemoryGuard | null = null;

  /** `plan`: the memory budget, when the caller already derived it (cli.ts, to exit on its problems). */
  constructor(config: Config, log: RootLogger, plan: MemoryPlan | null = null) {
    this.config = config;
    this.log = log;
    this.plan = plan;
    this.view = {
      nodeId: config.node.id,
      startedAt: Date.now(),
      journal: null,
      sources: this.sources,
      dispatchers: this.dispatchers,
      consumers: null,
      tls: [],
      memory: null,
      // Not ready while the journal refuses writes (recovering after a failed write): devices
      // would be refused, so a Service should send them to another node meanwhile.
      ready: () => this.listening && this.journal?.writable === true && this.stopping === null,
    };
  }

  /** Admin and gRPC health first (so probes answer while the journal opens), then journal, sinks, sources. */
  async start(): Promise<void> {
    const c = this.config;
    this.plan ??= planMemory(c);
    const plan = this.plan;
    const budget = plan.budget;
    this.logMemoryPlan(plan);
    if (c.admin.enabled) {
      const [{ AdminServer }, { createMetricsRegistry }] = await Promise.all([
        import('./admin/admin-server.ts'),
        import('./observability/metrics.ts'),
      ]);
      this.admin = new AdminServer(
        c.admin,
        this.view,
        createMetricsRegistry(this.view),
        this.log.child({ component: 'admin' }),
      );
      await this.admin.start();
    }
    if (c.grpc.enabled) {
      const { GatewayGrpcServer } = await import('./api/grpc/gateway-server.ts');
      this.grpc = new GatewayGrpcServer(
        { ...c.grpc, subscriberReadBytes: budget.subscriberReadBytes },
        this.log.child({ component: 'grpc' }),
      );
      this.view.consumers = this.grpc.consumers;
      await this.grpc.start();
      const tls = this.grpc.tlsReloads;
      if (tls) this.view.tls?.push({ component: 'grpc', counters: tls });
    }
    const journal = await Journal.open(
      {
        path: c.journal.path,
        maxBytes: c.journal.maxBytes,
        onFull: c.journal.onFull,
        ttlMs: c.journal.ttl,
        fsync: c.journal.fsync,
        groupCommit: c.journal.groupCommit,
        maxPendingBytes: budget.pendingBytes,
        tailBytes: budget.tailBytes,
        lockWaitMs: c.journal.lockWaitMs,
        deadLetterMaxBytes: c.journal.deadLetterMaxBytes,
      },
      this.log.child({ component: 'journal' }),
    );
    this.journal = journal;
    this.view.journal = journal;
    // Sources write through the guard when there is a limit: it pauses them near the limit.
    let intake: Journal | MemoryGuard = journal;
    if (budget.limit !== null && budget.pauseAtBytes !== null && budget.resumeAtBytes !== null) {
      this.guard = new MemoryGuard(
        journal,
        {
          limit: budget.limit,
          pauseAtBytes: budget.pauseAtBytes,
          resumeAtBytes: budget.resumeAtBytes,
          collectAtBytes: budget.collectAtBytes ?? undefined,
        },
        this.log.child({ component: 'memory' }),
      );
      intake = this.guard;
    }
    this.idleCompaction = new IdleCompaction(() => journal.counters.appended);
    this.view.memory = { budget, guard: this.guard, idle: this.idleCompaction };
    this.log.info(
      {
        path: journal.path,
        epoch: journal.epoch,
        records: journal.records,
        bytes: journal.bytes(),
        lastSeq: journal.lastCommittedSeq,
      },
      'journal open',
    );
    await this.removeStaleSinkCursors(journal);

    for (const [i, sc] of c.sinks.entries()) {
      const sink = await createSink(sc, { nodeId: c.node.id, log: this.log.child({ component: 'sink' }) });
      const tls = sink.tlsReloads;
      if (tls) this.view.tls?.push({ component: `sink/${sc.name}`, counters: tls });
      const d = new SinkDispatcher(
        sink,
        journal,
        {
          routes: sc.routes,
          batch: { ...sc.batch, maxBytes: budget.sinkBatchBytes[i] },
          retry: sc.retry,
          timeoutMs: sc.timeoutMs,
        },
        this.log.child({ component: 'dispatch' }),
      );
      await d.start();
      this.dispatchers.push(d);
    }

    let mqtt: MqttBrokerSource | null = null;
    if (c.mqtt.enabled) {
      const { MqttBrokerSource } = await import('./sources/mqtt-broker/mqtt-broker-source.ts');
      mqtt = new MqttBrokerSource(
        {
          ...c.mqtt,
          maxQueuedBytes: budget.mqttQueuedBytes,
          maxQueuedBytesTotal: budget.mqttQueuedBytesTotal,
          maxQueuedMessagesTotal: budget.mqttQueuedMessagesTotal,
        },
        intake,
        this.log.child({ component: 'mqtt' }),
      );
      await mqtt.start();
      this.sources.push(mqtt);
    }
    const mc = c.mqttClient;
    if (mc.url !== undefined && mc.clientId !== undefined) {
      const { MqttClientSource } = await import('./sources/mqtt-client/mqtt-client-source.ts');
      const client = new MqttClientSource(
        // ignoreTopicPrefixes: the topics of mqtt sinks publishing to this same broker (3.1.1 loop rule).
        {
          ...mc,
          url: mc.url,
          clientId: mc.clientId,
          nodeId: c.node.id,
          ignoreTopicPrefixes: bridgeLoop(c).prefixes,
        },
        intake,
        this.log.child({ component: 'mqtt-client' }),
      );
      await client.start();
      this.sources.push(client);
    }
    if (c.coap.enabled) {
      const { CoapServerSource } = await import('./sources/coap-server/coap-server-source.ts');
      const coap = new CoapServerSource(c.coap, intake, this.log.child({ component: 'coap' }));
      await coap.start();
      this.sources.push(coap);
    }
    // Gateway.Command goes to the source that owns the device: the CoAP observer (also for a
    // device with no resources) or the Modbus poller.
    const commands = new CommandRouter();
    if (c.coap.devices.length > 0) {
      const { CoapObserverSource } = await import('./sources/coap-observer/coap-observer-source.ts');
      const observer = new CoapObserverSource(
        c.coap.devices,
        intake,
        this.log.child({ component: 'coap-observer' }),
      );
      await observer.start();
      this.sources.push(observer);
      commands.add(
        c.coap.devices.map((d) => d.name),
        observer,
      );
    }
    if (c.modbus.devices.length > 0) {
      const { ModbusPoller } = await import('./sources/modbus/modbus-poller.ts');
      const modbus = new ModbusPoller(c.modbus, intake, this.log.child({ component: 'modbus' }));
      await modbus.start();
      this.sources.push(modbus);
      commands.add(
        c.modbus.devices.map((d) => d.name),
        modbus,
      );
    }
    this.grpc?.attach(journal, mqtt, commands);
    compactHeap();
    // After the start-up collection: its first reading is the idle daemon's.
    this.guard?.start();
    this.idleCompaction.start();
    this.listening = true;
    this.grpc?.setServing(true);
    // gRPC health follows readiness: NOT_SERVING while the journal refuses writes.
    journal.on('writable', (writable: boolean) => this.grpc?.setServing(writable && this.stopping === null));
    this.log.info(
      { sinks: c.sinks.map((s) => s.name), sources: this.sources.map((s) => s.name) },
      'edgeferry ready',
    );
  }

  private logMemoryPlan(plan: MemoryPlan): void {
    const b = plan.budget;
    const budgets = {
      pendingBytes: b.pendingBytes,
      tailBytes: b.tailBytes,
      sinkBatchBytes: b.sinkBatchBytes,
      subscriberReadBytes: b.subscriberReadBytes,
      mqttQueuedBytes: b.mqttQueuedBytes,
      mqttQueuedBytesTotal: b.mqttQueuedBytesTotal,
      mqttQueuedMessagesTotal: b.mqttQueuedMessagesTotal,
    };
    if (b.limit === null) {
      this.log.info(
        { source: 'none', budgets },
        'memory: no limit set and none found in a cgroup: fixed buffer sizes, no memory guard',
      );
      return;
    }
    this.log.info(
      { source: b.source, limit: b.limit, cgroupFile: plan.cgroupFile, pauseAt: b.pauseAtBytes, budgets },
      `memory: limit ${mib(b.limit)} (${b.source}); intake pauses above ${mib(b.pauseAtBytes ?? 0)} RSS`,
    );
  }

  /** A sink removed from the config must not hold back trimming forever. */
  private async removeStaleSinkCursors(journal: Journal): Promise<void> {
    const wanted = new Set(this.config.sinks.map((s) => SinkDispatcher.cursorNameOf(s.name)));
    for (const name of journal.cursorNames()) {
      if (name.startsWith('sink/') && !wanted.has(name)) {
        await journal.removeCursor(name);
        this.log.warn({ cursor: name }, 'sink no longer configured: removed its cursor');
      }
    }
  }

  /**
   * Stop intake, commit what was accepted, give sinks `drainTimeoutMs` to deliver, close the
   * journal. Safe to call twice.
   */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const t0 = Date.now();
    this.log.info({}, 'shutting down: intake stopped');
    // A recovery waiting for disk space must not hold shutdown past drainTimeoutMs (the pod
    // would be SIGKILLed): it stops retrying now.
    this.journal?.abandonRecovery();
    this.grpc?.setServing(false);
    this.guard?.stop();
    this.idleCompaction?.stop();
    await Promise.all(
      this.sources.map((s) =>
        s.stop().catch((err) => this.log.warn({ source: s.name, err: err.message }, 'source stop failed')),
      ),
    );
    await this.journal?.sync();
    await Promise.all(this.dispatchers.map((d) => d.stop(this.config.shutdown.drainTimeoutMs)));
    await this.grpc?.stop();
    await this.journal?.close();
    await this.admin?.stop();
    const undelivered = this.dispatchers.map((d) => ({ sink: d.sink.name, backlog: d.status().backlog }));
    this.log.info({ ms: Date.now() - t0, undelivered }, 'shutdown complete');
  }
}
