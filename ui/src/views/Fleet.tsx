// The fleet picture: one card per controller replica with its clusters as coloured chips and a
// queue bar, repo-servers with render slots, the render-cache hit ring, and recent hand-overs.
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import { ErrorBox } from '../components/ErrorBox';
import { age, hostOf, hueOf, num } from '../format';
import type { ClusterView, Fleet as FleetData, Replica, RepoServer } from '../types';

function usePoll<T>(f: () => Promise<T>, everyMs: number): { data: T | null; error: unknown; at: number } {
  const [state, setState] = useState<{ data: T | null; error: unknown; at: number }>({ data: null, error: null, at: 0 });
  useEffect(() => {
    let timer: number | undefined;
    let alive = true;
    const tick = async () => {
      window.clearTimeout(timer);
      if (document.visibilityState === 'visible') {
        try {
          const d = await f();
          if (alive) setState({ data: d, error: null, at: Date.now() });
        } catch (e) {
          if (alive) setState((s) => ({ ...s, error: e }));
        }
      }
      if (alive) timer = window.setTimeout(tick, everyMs);
    };
    const onVis = () => document.visibilityState === 'visible' && tick();
    document.addEventListener('visibilitychange', onVis);
    tick();
    return () => {
      alive = false;
      window.clearTimeout(timer);
      document.removeEventListener('visibilitychange', onVis);
    };
  }, []);
  return state;
}

type Names = Map<string, string>;

function ClusterChip(props: { server: string; names: Names; state?: 'pending' | 'releasing' | 'unowned'; testid?: string }) {
  const name = props.names.get(props.server) || hostOf(props.server);
  const label = props.state ? `${name} (${props.state})` : name;
  return (
    <li
      class={`chip${props.state ? ` ${props.state}` : ''}`}
      style={{ '--hue': String(hueOf(props.server)) }}
      data-testid={props.testid ?? 'replica-cluster'}
      data-server={props.server}
      title={`${props.server}${props.state ? ` — ${props.state}` : ''}`}
    >
      <span class="chip-dot" aria-hidden="true" />
      {label}
    </li>
  );
}

function Ring(props: { ratio: number | null | undefined }) {
  const r = 38;
  const c = 2 * Math.PI * r;
  const v = props.ratio ?? null;
  const pct = v === null ? null : Math.round(v * 1000) / 10;
  return (
    <figure class="ring-fig" data-testid="cache-ratio" data-ratio={v ?? ''}>
      <svg viewBox="0 0 100 100" width="112" height="112" role="img" aria-label={pct === null ? 'Render cache hit ratio: no renders yet' : `Render cache hit ratio ${pct}%`}>
        <circle cx="50" cy="50" r={r} class="ring-track" />
        {v !== null && <circle cx="50" cy="50" r={r} class="ring-value" stroke-dasharray={`${c * v} ${c}`} transform="rotate(-90 50 50)" />}
        <text x="50" y="50" class="ring-text" text-anchor="middle" dominant-baseline="central">
          {pct === null ? '—' : `${pct}%`}
        </text>
      </svg>
      <figcaption>Render cache hits</figcaption>
    </figure>
  );
}

function Bar(props: { value: number; max: number; label: string; tone?: string }) {
  const w = props.max > 0 ? Math.min(100, (100 * props.value) / props.max) : 0;
  return (
    <span class={`bar ${props.tone ?? ''}`} role="meter" aria-label={props.label} aria-valuemin={0} aria-valuemax={props.max} aria-valuenow={props.value}>
      <span class="bar-fill" style={{ width: `${w}%` }} />
    </span>
  );
}

function ReplicaCard(props: { r: Replica; names: Names; maxQueue: number }) {
  const { r, names } = props;
  const st = r.status;
  const owned = st?.ownedClusters ?? [];
  const pending = st?.pendingClusters ?? [];
  const releasing = st?.releasingClusters ?? [];
  const depth = st?.queueDepth ?? 0;
  const oldest = st?.queueOldestSeconds;
  const tone = depth === 0 ? 'ok' : typeof oldest === 'number' && oldest > 30 ? 'bad' : 'busy';
  return (
    <article class={`replica card${r.live ? '' : ' dead'}${st?.fenced ? ' fenced' : ''}`} data-testid="replica" data-identity={r.identity} data-live={r.live ? 'true' : 'false'} aria-label={`Replica ${r.identity}${r.live ? '' : ' (not live)'}`}>
      <header class="replica-head">
        <span class={`live-dot ${r.live ? 'on' : 'off'}`} aria-hidden="true" />
        <h3>{r.identity}</h3>
        <span class={`tag ${r.live ? 'ok' : ''}`}>{r.live ? (st?.fenced ? 'fenced' : 'live') : 'no heartbeat'}</span>
      </header>
      {r.address && <div class="muted mono small">{r.address}</div>}
      {r.error && <div class="note bad small">{r.error}</div>}
      {!st && <div class="muted small">No status from this replica{r.claimedClusters ? `; its Lease still claims ${r.claimedClusters} cluster${r.claimedClusters === 1 ? '' : 's'}` : ''}.</div>}
      {st && <div class="replica-metrics">
        <div class="metric">
          <span class="m-label">Queue</span>
          <Bar value={depth} max={props.maxQueue} label={`Queue depth of ${r.identity}`} tone={tone} />
          <span class="m-value">
            {num(depth)}
            {typeof oldest === 'number' && depth > 0 && <span class="muted"> · oldest {Math.round(oldest)} s</span>}
          </span>
        </div>
        <div class="metric-row">
          <span>
            <strong>{st?.ownedApplications !== undefined ? num(st.ownedApplications) : '—'}</strong> apps
          </span>
          <span>
            <strong>{typeof r.reconcilesPerSecond === 'number' ? r.reconcilesPerSecond.toFixed(1) : '—'}</strong> reconciles/s
          </span>
          <span>
            <strong>{st?.repoServerCallsInFlight ?? '—'}</strong> repo calls
          </span>
        </div>
      </div>}
      {st && <div class="replica-clusters">
        <span class="m-label">
          {owned.length} cluster{owned.length === 1 ? '' : 's'}
          {st?.ownsAll ? ' (owns all)' : ''}
        </span>
        <ul class="chips" aria-label={`Clusters of ${r.identity}`}>
          {owned.map((s) => (
            <ClusterChip key={s} server={s} names={names} />
          ))}
          {pending.map((s) => (
            <ClusterChip key={`p${s}`} server={s} names={names} state="pending" testid="replica-cluster-pending" />
          ))}
          {releasing.map((s) => (
            <ClusterChip key={`r${s}`} server={s} names={names} state="releasing" testid="replica-cluster-releasing" />
          ))}
        </ul>
      </div>}
    </article>
  );
}

function RepoServerCard(props: { s: RepoServer }) {
  const { s } = props;
  const slots = s.renderSlots;
  const running = s.rendersRunning;
  const waiting = s.rendersWaiting;
  return (
    <article class={`repo-server card${s.up ? '' : ' dead'}`} data-testid="repo-server" data-endpoint={s.endpoint} data-up={s.up ? 'true' : 'false'}>
      <header class="replica-head">
        <span class={`live-dot ${s.up ? 'on' : 'off'}`} aria-hidden="true" />
        <h3 class="mono small">{hostOf(s.endpoint)}</h3>
        <span class={`tag ${s.up ? 'ok' : 'bad'}`}>{s.up ? 'up' : 'down'}</span>
      </header>
      {typeof slots === 'number' && typeof running === 'number' ? (
        <>
          <div class="slots" role="meter" aria-label={`Render slots in use on ${s.endpoint}`} aria-valuemin={0} aria-valuemax={slots} aria-valuenow={running}>
            {Array.from({ length: Math.min(slots, 32) }, (_, i) => (
              <span key={i} class={`slot${i < running ? ' busy' : ''}`} />
            ))}
          </div>
          <div class="metric-row">
            <span>
              <strong>{running}</strong>/{slots} rendering
            </span>
            <span class={waiting ? 'warn-text' : ''}>
              <strong>{waiting ?? 0}</strong> waiting
            </span>
          </div>
        </>
      ) : (
        <div class="muted small">{s.up ? 'render load not reported' : 'unreachable'}</div>
      )}
    </article>
  );
}

export function Fleet() {
  const { data, error, at } = usePoll<FleetData>(() => api.fleet(), 2000);
  const [clusters, setClusters] = useState<ClusterView[]>([]);
  useEffect(() => {
    api.clusters().then((c) => setClusters(c.items), () => {});
  }, []);
  const names: Names = new Map(clusters.map((c) => [c.server, c.name]));
  if (!data) {
    return (
      <div class="page">
        <h1>Fleet</h1>
        {error ? <ErrorBox error={error} what="the fleet" /> : <p class="muted">Loading…</p>}
      </div>
    );
  }
  const replicas = [...data.replicas].sort((a, b) => Number(b.live) - Number(a.live) || a.identity.localeCompare(b.identity));
  const live = replicas.filter((r) => r.live).length;
  const maxQueue = Math.max(100, ...replicas.map((r) => r.status?.queueDepth ?? 0));
  const handovers = data.handovers ?? [];
  const unowned = data.unownedClusters ?? [];
  const totalQueue = replicas.reduce((n, r) => n + (r.status?.queueDepth ?? 0), 0);
  const rates = replicas.map((r) => r.reconcilesPerSecond).filter((x): x is number => typeof x === 'number');
  const rate = rates.length ? rates.reduce((a, b) => a + b, 0).toFixed(1) : '—';
  return (
    <div class="page fleet-page">
      <div class="page-head">
        <h1>Fleet</h1>
        <span class="muted small" aria-live="off">updated {age(new Date(at).toISOString())} ago · every 2 s</span>
      </div>
      {error ? <ErrorBox error={error} what="the latest fleet state (showing the previous one)" /> : null}
      <section class="fleet-top">
        <div class="stat card">
          <span class="stat-num">
            {live}
            <span class="muted">/{replicas.length}</span>
          </span>
          <span class="stat-label">controllers live</span>
        </div>
        <div class="stat card">
          <span class="stat-num">{num(data.clusters ?? 0)}</span>
          <span class="stat-label">clusters</span>
        </div>
        <div class="stat card">
          <span class="stat-num">{num(data.applications ?? 0)}</span>
          <span class="stat-label">applications</span>
        </div>
        <div class="stat card">
          <span class="stat-num">{num(totalQueue)}</span>
          <span class="stat-label">queued · {rate} reconciles/s</span>
        </div>
        <div class="stat card ring-card">
          <Ring ratio={data.manifestCacheHitRatio} />
        </div>
      </section>
      {unowned.length > 0 && (
        <section class="card unowned" aria-label="Clusters without an owner">
          <strong>{unowned.length} cluster{unowned.length === 1 ? '' : 's'} without a live owner</strong>
          <ul class="chips">
            {unowned.map((s) => (
              <ClusterChip key={s} server={s} names={names} state="unowned" testid="unowned-cluster" />
            ))}
          </ul>
        </section>
      )}
      <h2 class="section-title">Controller replicas</h2>
      <div class="replica-grid">
        {replicas.map((r) => (
          <ReplicaCard key={r.identity} r={r} names={names} maxQueue={maxQueue} />
        ))}
        {replicas.length === 0 && <p class="muted">No controller replica has a Lease.</p>}
      </div>
      <div class="fleet-bottom">
        <section>
          <h2 class="section-title">Repo-servers</h2>
          <div class="repo-grid">
            {data.repoServers.map((s) => (
              <RepoServerCard key={s.endpoint} s={s} />
            ))}
            {data.repoServers.length === 0 && <p class="muted">No repo-server reported.</p>}
          </div>
        </section>
        <section>
          <h2 class="section-title">Recent hand-overs</h2>
          {handovers.length === 0 ? (
            <p class="muted">{data.handovers ? 'No cluster changed hands recently.' : 'Hand-overs are not reported by this server.'}</p>
          ) : (
            <ol class="handovers">
              {handovers.slice(0, 30).map((h, i) => (
                <li key={i} data-testid="handover" data-cluster={h.cluster}>
                  <span class="chip" style={{ '--hue': String(hueOf(h.cluster)) }} title={h.cluster}>
                    <span class="chip-dot" aria-hidden="true" />
                    {names.get(h.cluster) || hostOf(h.cluster)}
                  </span>
                  <span class="ho-from">{h.from ?? 'nobody'}</span>
                  <span class="ho-arrow" aria-label="to">→</span>
                  <span class="ho-to">{h.to ?? 'nobody'}</span>
                  <span class="muted" title={h.at}>
                    {age(h.at)} ago
                  </span>
                </li>
              ))}
            </ol>
          )}
        </section>
      </div>
    </div>
  );
}
