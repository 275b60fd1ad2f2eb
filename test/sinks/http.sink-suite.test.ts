// The HTTP sink through the shared sink suite, against test/helpers/http-receiver.ts.

import { HttpSink } from '../../src/sinks/http/http-sink.ts';
import { HttpReceiver } from '../helpers/http-receiver.ts';
import { type SinkDriver, type SuiteUpstream, sinkSuite, type UpstreamAnswer } from './sink-suite.ts';

const STATUS: Record<Exclude<UpstreamAnswer, 'hang'>, number> = {
  accept: 200,
  retry: 503,
  refuse: 400,
  auth: 401,
};

class HttpUpstream implements SuiteUpstream {
  readonly rx = new HttpReceiver();
  answer: SuiteUpstream['answer'] = () => 'accept';

  constructor() {
    this.rx.respond = (batch) => {
      const a = this.answer(batch.records.map((r) => r.payload));
      return a === 'hang' ? null : { status: STATUS[a] };
    };
  }

  calls(): number {
    return this.rx.requests;
  }

  accepted() {
    return this.rx.records.map((r) => ({ seq: r.seq, id: r.id, payload: r.payload }));
  }

  down(): Promise<void> {
    return this.rx.stop();
  }

  up(): Promise<void> {
    return this.rx.start(this.rx.port);
  }

  close(): Promise<void> {
    return this.rx.stop();
  }
}

const http: SinkDriver<HttpUpstream> = {
  name: 'http',
  async startUpstream() {
    const u = new HttpUpstream();
    await u.rx.start();
    return u;
  },
  createSink: (u, opts) => new HttpSink({ ...opts, url: u.rx.url, payloadEncoding: 'utf8' }),
};

sinkSuite(http);
