// One application's page: header with status and actions, summary, operation progress, and the
// Tree / Diff / History / Events tabs (the tab and the selected resource live in the URL).
import { useState } from 'preact/hooks';
import { api } from '../api';
import { operationRunning, useAppData } from '../appData';
import { ErrorBox } from '../components/ErrorBox';
import { Link } from '../components/Link';
import { HealthBadge, SyncBadge } from '../components/StatusBadge';
import { useLocation, withQuery } from '../router';
import { useCanI } from '../session';
import { AppSummaryPanel } from './AppSummary';
import { DiffView } from './DiffView';
import { EventsView } from './EventsView';
import { HistoryView } from './HistoryView';
import { OperationPanel } from './OperationPanel';
import { ResourceTree } from './ResourceTree';
import { SyncDialog } from './SyncDialog';

const TABS = [
  ['tree', 'Tree'],
  ['diff', 'Diff'],
  ['history', 'History'],
  ['events', 'Events'],
] as const;

export function AppDetail(props: { ns: string; name: string }) {
  const { ns, name } = props;
  const loc = useLocation();
  const data = useAppData(ns, name);
  const { app } = data;
  const project = app ? app.spec.project || 'default' : null;
  // Argo CD's RBAC object with the app's namespace (the server reads a control-plane app's as
  // <project>/<name> too), so apps outside the control plane are asked about as the API checks them.
  const object = project ? `${project}/${ns}/${name}` : null;
  const canSync = useCanI('applications', 'sync', object);
  const canGet = useCanI('applications', 'get', object);
  const [syncOpen, setSyncOpen] = useState(false);
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState('');

  const tab = (TABS.find(([t]) => t === loc.query.get('view')) ?? TABS[0])[0];
  const running = operationRunning(app);

  const act = async (what: string, f: () => Promise<unknown>, done: string) => {
    setBusy(what);
    setMsg(null);
    try {
      await f();
      setMsg({ ok: true, text: done });
      data.reload();
    } catch (e) {
      setMsg({ ok: false, text: `${what} failed: ${e instanceof Error ? e.message : String(e)}` });
    } finally {
      setBusy('');
    }
  };

  if (!app) {
    return (
      <div class="page">
        <nav class="crumbs" aria-label="Breadcrumb">
          <Link href="/applications">Applications</Link> <span aria-hidden="true">/</span> {ns}/{name}
        </nav>
        {data.appError ? <ErrorBox error={data.appError} what={`application ${ns}/${name}`} /> : <p class="muted">Loading…</p>}
      </div>
    );
  }

  return (
    <div class="page detail-page">
      <nav class="crumbs" aria-label="Breadcrumb">
        <Link href="/applications">Applications</Link> <span aria-hidden="true">/</span> <span>{ns}</span>
      </nav>
      <div class="app-head">
        <div class="app-title">
          <h1>{name}</h1>
          <HealthBadge status={app.status?.health?.status} testid="app-health-status" />
          <SyncBadge status={app.status?.sync?.status} testid="app-sync-status" />
        </div>
        <div class="actions" role="toolbar" aria-label="Application actions">
          {canSync && (
            <button type="button" class="btn primary" data-testid="sync-button" onClick={() => setSyncOpen(true)}>
              Sync…
            </button>
          )}
          {canGet && (
            <>
              <button type="button" class="btn" data-testid="refresh-button" disabled={!!busy} onClick={() => act('Refresh', () => api.refresh(ns, name, false), 'Refresh requested.')}>
                Refresh
              </button>
              <button type="button" class="btn" data-testid="hard-refresh-button" disabled={!!busy} onClick={() => act('Hard refresh', () => api.refresh(ns, name, true), 'Hard refresh requested: manifests are rendered again.')}>
                Hard refresh
              </button>
            </>
          )}
          {canSync && running && (
            <button type="button" class="btn danger" data-testid="terminate-button" disabled={!!busy} onClick={() => act('Terminate', () => api.terminate(ns, name), 'Termination requested.')}>
              Terminate
            </button>
          )}
        </div>
      </div>
      <div class="action-msg" role="status" aria-live="polite">
        {msg && <div class={msg.ok ? 'note ok' : 'note bad'}>{msg.text}</div>}
      </div>
      {data.appError ? <ErrorBox error={data.appError} what="the latest state" /> : null}
      <AppSummaryPanel app={app} />
      {app.status?.operationState && <OperationPanel op={app.status.operationState} resources={data.res?.resources ?? null} />}
      <div class="tabs" role="tablist" aria-label="Application views">
        {TABS.map(([t, label]) => (
          <Link
            key={t}
            role="tab"
            aria-selected={tab === t}
            class={tab === t ? 'tab on' : 'tab'}
            href={withQuery(loc.path, new URLSearchParams(), { view: t })}
            data-testid={`tab-${t}`}
          >
            {label}
          </Link>
        ))}
      </div>
      <section class="tabpanel" role="tabpanel" aria-label={TABS.find(([t]) => t === tab)![1]}>
        {tab === 'tree' && <ResourceTree app={app} data={data} />}
        {tab === 'diff' && <DiffView data={data} loc={loc} />}
        {tab === 'history' && <HistoryView app={app} version={data.version} canSync={!!canSync} onDone={data.reload} />}
        {tab === 'events' && <EventsView ns={ns} name={name} version={data.version} />}
      </section>
      {syncOpen && (
        <SyncDialog
          app={app}
          resources={data.res?.resources ?? null}
          onClose={() => setSyncOpen(false)}
          onStarted={(text) => {
            setSyncOpen(false);
            setMsg({ ok: true, text });
            data.reload();
          }}
        />
      )}
    </div>
  );
}
