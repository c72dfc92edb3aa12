// Deployment history (newest first) with a Rollback per entry for users who may sync.
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import { Dialog } from '../components/Dialog';
import { ErrorBox } from '../components/ErrorBox';
import { age, shortRev } from '../format';
import type { Application, HistoryEntry } from '../types';

function RollbackDialog(props: { app: Application; entry: HistoryEntry; onClose: () => void; onDone: (msg: string) => void }) {
  const { app, entry } = props;
  const [prune, setPrune] = useState(false);
  const [dryRun, setDryRun] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const auto = !!app.spec.syncPolicy?.automated;
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.rollback(app.metadata.namespace, app.metadata.name, entry.id, prune, dryRun);
      props.onDone(`Rollback to history ${entry.id} (${shortRev(entry.revision)}) requested.`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Dialog title={`Roll back to ${shortRev(entry.revision)}`} onClose={props.onClose} testid="rollback-dialog">
      <form onSubmit={submit} class="dialog-body">
        <p>
          Sync history entry <strong>{entry.id}</strong> again: revision <code>{entry.revision}</code>, deployed {entry.deployedAt ? `${age(entry.deployedAt)} ago` : 'at an unknown time'}. Hooks do not run.
        </p>
        {auto && <p class="note bad">Automated sync is on: the server refuses rollbacks until it is turned off.</p>}
        <label class="check">
          <input type="checkbox" checked={prune} onChange={(e) => setPrune(e.currentTarget.checked)} /> Prune resources not in that revision
        </label>
        <label class="check">
          <input type="checkbox" checked={dryRun} onChange={(e) => setDryRun(e.currentTarget.checked)} /> Dry run
        </label>
        <ErrorBox error={error} />
        <div class="dialog-foot">
          <button type="button" class="btn" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" class="btn danger" data-testid="rollback-confirm" disabled={busy}>
            Roll back
          </button>
        </div>
      </form>
    </Dialog>
  );
}

export function HistoryView(props: { app: Application; version: number; canSync: boolean; onDone: () => void }) {
  const { app } = props;
  const [items, setItems] = useState<HistoryEntry[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [target, setTarget] = useState<HistoryEntry | null>(null);
  const [msg, setMsg] = useState('');
  useEffect(() => {
    api.history(app.metadata.namespace, app.metadata.name).then(
      (h) => {
        setItems([...(h.history ?? [])].reverse());
        setError(null);
      },
      setError,
    );
  }, [app.metadata.namespace, app.metadata.name, props.version]);
  if (error) return <ErrorBox error={error} what="the history" />;
  if (!items) return <p class="muted">Loading history…</p>;
  const current = app.status?.sync?.revision;
  const auto = !!app.spec.syncPolicy?.automated;
  return (
    <div>
      <div role="status" aria-live="polite">{msg && <div class="note ok">{msg}</div>}</div>
      {items.length === 0 ? (
        <p class="muted">No deployments yet.</p>
      ) : (
        <table class="table">
          <thead>
            <tr>
              <th scope="col">ID</th>
              <th scope="col">Revision</th>
              <th scope="col">Deployed</th>
              <th scope="col">By</th>
              <th scope="col">Source</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {items.map((h) => (
              <tr key={h.id} data-testid="history-row" data-id={h.id}>
                <td>{h.id}</td>
                <td class="mono" title={h.revision}>
                  {shortRev(h.revision)}
                  {h.revision && h.revision === current && <span class="tag">current</span>}
                </td>
                <td title={h.deployedAt}>{h.deployedAt ? `${age(h.deployedAt)} ago` : '—'}</td>
                <td>{h.initiatedBy?.automated ? 'automated' : h.initiatedBy?.username ?? '—'}</td>
                <td class="mono">{h.source?.path ?? h.source?.chart ?? ''}</td>
                <td class="right">
                  {props.canSync && (
                    <button
                      type="button"
                      class="btn small"
                      data-testid="rollback-button"
                      disabled={auto || (h.revision === current && h === items[0])}
                      title={auto ? 'Rollback needs automated sync off (as in Argo CD)' : h === items[0] && h.revision === current ? 'This is what is deployed now' : undefined}
                      onClick={() => setTarget(h)}
                      aria-label={`Roll back to history ${h.id}`}
                    >
                      Rollback
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {target && (
        <RollbackDialog
          app={app}
          entry={target}
          onClose={() => setTarget(null)}
          onDone={(m) => {
            setTarget(null);
            setMsg(m);
            props.onDone();
          }}
        />
      )}
    </div>
  );
}
