// The applications page: filters, count, and a virtualised list or tile grid (only visible rows
// are in the DOM), fed page by page from the server and kept live by the stream.
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { ListFilters } from '../api';
import { AppPages } from '../appPages';
import { ErrorBox } from '../components/ErrorBox';
import { HealthBadge, PhaseBadge, SyncBadge } from '../components/StatusBadge';
import { hostOf, num, shortRev } from '../format';
import { appHref, linkClick, navigate, useLocation, withQuery } from '../router';
import type { AppSummary } from '../types';
import { AppFilters } from './AppFilters';

const ROW_H = 52;
const TILE_H = 148;
const TILE_MIN_W = 300;
const OVERSCAN = 8;

function filtersOf(q: URLSearchParams): ListFilters {
  return {
    search: q.get('search') ?? undefined,
    project: q.get('project') ?? undefined,
    cluster: q.get('cluster') ?? undefined,
    namespace: q.get('namespace') ?? undefined,
    selector: q.get('labels') ?? undefined,
    health: q.get('health') ?? undefined,
    sync: q.get('sync') ?? undefined,
  };
}

function destination(a: AppSummary): string {
  const cluster = a.destName || hostOf(a.destServer);
  return a.destNamespace ? `${cluster} / ${a.destNamespace}` : cluster;
}

function Row(props: { app: AppSummary }) {
  const a = props.app;
  return (
    <a class="app-row" href={appHref(a.namespace, a.name)} onClick={linkClick} data-testid="app-row" data-app={`${a.namespace}/${a.name}`}>
      <span class="c-status">
        <HealthBadge status={a.health} small />
        <SyncBadge status={a.sync} small />
      </span>
      <span class="c-name">
        <span class="name">{a.name}</span>
        <span class="sub">{a.namespace}</span>
      </span>
      <span class="c-proj">
        <span class="lbl">project</span>
        {a.project}
      </span>
      <span class="c-dest" title={a.destServer || a.destName}>
        <span class="lbl">destination</span>
        {destination(a)}
      </span>
      <span class="c-src" title={`${a.repoUrl} ${a.path}`}>
        <span class="lbl">source</span>
        <span class="mono">{a.path || a.repoUrl}</span>
        <span class="sub mono">
          {a.targetRevision || 'HEAD'}
          {a.revision ? ` → ${shortRev(a.revision)}` : ''}
        </span>
      </span>
      <span class="c-op">
        <PhaseBadge phase={a.operationPhase === 'Succeeded' ? undefined : a.operationPhase} />
      </span>
    </a>
  );
}

function Tile(props: { app: AppSummary }) {
  const a = props.app;
  return (
    <a class={`app-tile health-edge-${(a.health || 'unknown').toLowerCase()}`} href={appHref(a.namespace, a.name)} onClick={linkClick} data-testid="app-row" data-app={`${a.namespace}/${a.name}`}>
      <span class="tile-head">
        <span class="name">{a.name}</span>
        <PhaseBadge phase={a.operationPhase === 'Succeeded' ? undefined : a.operationPhase} />
      </span>
      <span class="tile-badges">
        <HealthBadge status={a.health} small />
        <SyncBadge status={a.sync} small />
      </span>
      <dl class="tile-facts">
        <dt>Project</dt>
        <dd>{a.project}</dd>
        <dt>Dest.</dt>
        <dd title={a.destServer || a.destName}>{destination(a)}</dd>
        <dt>Source</dt>
        <dd class="mono" title={a.repoUrl}>
          {a.path || a.repoUrl} @ {a.targetRevision || 'HEAD'}
        </dd>
      </dl>
    </a>
  );
}

function Placeholder(props: { tile?: boolean }) {
  return <div class={props.tile ? 'app-tile placeholder' : 'app-row placeholder'} aria-hidden="true" />;
}

export function AppList() {
  const loc = useLocation();
  const filters = useMemo(() => filtersOf(loc.query), [loc.full]);
  const fkey = JSON.stringify(filters);
  const view = loc.query.get('view') === 'tiles' ? 'tiles' : 'list';
  const [, setTick] = useState(0);
  const bump = () => setTick((n) => n + 1);
  const pages = useMemo(() => new AppPages(filters, bump), [fkey]);
  useEffect(() => {
    pages.start();
    return () => pages.stop();
  }, [pages]);

  const scroller = useRef<HTMLDivElement>(null);
  const [box, setBox] = useState({ top: 0, height: 600, width: 1000 });
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const measure = () => setBox({ top: el.scrollTop, height: el.clientHeight, width: el.clientWidth });
    measure();
    let raf = 0;
    const onScroll = () => {
      if (!raf) raf = requestAnimationFrame(() => ((raf = 0), measure()));
    };
    el.addEventListener('scroll', onScroll, { passive: true });
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => {
      el.removeEventListener('scroll', onScroll);
      ro.disconnect();
      cancelAnimationFrame(raf);
    };
  }, [pages.loadedFirst]);
  // A new filter starts at the top.
  useEffect(() => {
    if (scroller.current) scroller.current.scrollTop = 0;
  }, [fkey]);

  const total = pages.total ?? 0;
  const cols = view === 'tiles' ? Math.max(1, Math.floor((box.width - 16) / TILE_MIN_W)) : 1;
  const rowH = view === 'tiles' ? TILE_H : ROW_H;
  const rowCount = Math.ceil(total / cols);
  const firstRow = Math.max(0, Math.floor(box.top / rowH) - OVERSCAN);
  const lastRow = Math.min(rowCount - 1, Math.ceil((box.top + box.height) / rowH) + OVERSCAN);
  const firstIdx = firstRow * cols;
  const lastIdx = Math.min(total - 1, (lastRow + 1) * cols - 1);
  useEffect(() => {
    if (pages.loadedFirst) pages.ensure(firstIdx, lastIdx);
  });

  // Arrow keys move between rows (the list scrolls to keep the focused row in view).
  const pendingFocus = useRef<number | null>(null);
  useLayoutEffect(() => {
    const i = pendingFocus.current;
    if (i === null || !scroller.current) return;
    const el = scroller.current.querySelector<HTMLElement>(`[data-pos="${i}"] a`);
    if (el) {
      el.focus({ preventScroll: true });
      pendingFocus.current = null;
    }
  });
  const onKeyDown = (e: KeyboardEvent) => {
    const item = (e.target as HTMLElement).closest<HTMLElement>('[data-pos]');
    const el = scroller.current;
    if (!item || !el) return;
    const i = Number(item.dataset.pos);
    const step = { ArrowDown: cols, ArrowUp: -cols, ArrowRight: view === 'tiles' ? 1 : 0, ArrowLeft: view === 'tiles' ? -1 : 0, PageDown: cols * 10, PageUp: -cols * 10, Home: -Infinity, End: Infinity }[e.key];
    if (step === undefined || step === 0) return;
    e.preventDefault();
    const next = Math.max(0, Math.min(total - 1, i + step));
    const r = Math.floor(next / cols);
    if (r * rowH < el.scrollTop) el.scrollTop = r * rowH;
    else if ((r + 1) * rowH > el.scrollTop + el.clientHeight) el.scrollTop = (r + 1) * rowH - el.clientHeight;
    const now = el.querySelector<HTMLElement>(`[data-pos="${next}"] a`);
    if (now) now.focus({ preventScroll: true });
    else {
      pendingFocus.current = next;
      bump();
    }
  };

  const items = [];
  for (let i = firstIdx; i <= lastIdx; i++) {
    const a = pages.get(i);
    const r = Math.floor(i / cols);
    const c = i % cols;
    const style = view === 'tiles'
      ? { transform: `translate(${(c * 100).toFixed(4)}%, ${r * rowH}px)`, width: `${100 / cols}%`, height: `${rowH}px` }
      : { transform: `translateY(${r * rowH}px)`, height: `${rowH}px` };
    items.push(
      <div role="listitem" class="vitem" data-pos={i} aria-setsize={total} aria-posinset={i + 1} style={style} key={a ? `${a.namespace}/${a.name}` : `p${i}`}>
        {a ? view === 'tiles' ? <Tile app={a} /> : <Row app={a} /> : <Placeholder tile={view === 'tiles'} />}
      </div>,
    );
  }

  const ready = pages.loadedFirst && (total === 0 || pages.get(0) !== undefined || pages.get(firstIdx) !== undefined);
  return (
    <div class="page list-page">
      <div class="page-head">
        <h1>Applications</h1>
        <span class="count" data-testid="app-count" data-count={pages.total ?? ''} aria-live="polite">
          {pages.total === null ? 'Loading…' : `${num(total)} application${total === 1 ? '' : 's'}`}
        </span>
        <div class="spacer" />
        <div class="seg" role="group" aria-label="Layout">
          <button type="button" class={view === 'list' ? 'on' : ''} aria-pressed={view === 'list'} onClick={() => navigate(withQuery(loc.path, loc.query, { view: null }), true)}>
            List
          </button>
          <button type="button" class={view === 'tiles' ? 'on' : ''} aria-pressed={view === 'tiles'} onClick={() => navigate(withQuery(loc.path, loc.query, { view: 'tiles' }), true)}>
            Tiles
          </button>
        </div>
      </div>
      <AppFilters loc={loc} />
      {pages.error ? <ErrorBox error={pages.error} what="applications" /> : null}
      {view === 'list' && (
        <div class="list-cols" aria-hidden="true">
          <span>Health · Sync</span>
          <span>Name</span>
          <span>Project</span>
          <span>Destination</span>
          <span>Source</span>
          <span>Operation</span>
        </div>
      )}
      <div
        ref={scroller}
        class={`vlist ${view}`}
        data-testid="app-list"
        data-ready={ready ? 'true' : 'false'}
        role="list"
        aria-label={`Applications, ${total} in all`}
        aria-busy={!pages.loadedFirst}
        onKeyDown={onKeyDown}
      >
        <div class="vspace" style={{ height: `${rowCount * rowH}px` }}>
          {items}
        </div>
        {pages.loadedFirst && total === 0 && !pages.error && (
          <div class="empty">
            {Object.values(filters).some(Boolean)
              ? 'No applications match these filters.'
              : 'No applications you may see. If you expected some, ask for access to their projects.'}
          </div>
        )}
      </div>
    </div>
  );
}
