// The sync dialog: Argo CD's options (prune, dry run, apply only, force, revision, sync options,
// prune propagation) and the resources to sync, all selected by default.
import { useMemo, useState } from 'preact/hooks';
import { api, type SyncBody } from '../api';
import { Dialog } from '../components/Dialog';
import { ErrorBox } from '../components/ErrorBox';
import { resourceId } from '../format';
import type { Application, ResourceView } from '../types';

const OPTIONS: [string, string, string][] = [
  ['Validate=false', 'Skip schema validation', 'Validate=false'],
  ['CreateNamespace=true', 'Auto-create namespace', 'CreateNamespace=true'],
  ['PruneLast=true', 'Prune last', 'PruneLast=true'],
  ['ApplyOutOfSyncOnly=true', 'Apply out of sync only', 'ApplyOutOfSyncOnly=true'],
  ['RespectIgnoreDifferences=true', 'Respect ignore differences', 'RespectIgnoreDifferences=true'],
  ['Replace=true', 'Replace', 'Replace=true'],
  ['FailOnSharedResource=true', 'Fail on shared resource', 'FailOnSharedResource=true'],
];

export function SyncDialog(props: { app: Application; resources: ResourceView[] | null; onClose: () => void; onStarted: (msg: string) => void }) {
  const { app } = props;
  const appOpts = app.spec.syncPolicy?.syncOptions ?? [];
  const resources = useMemo(
    () =>
      props.resources ??
      (app.status?.resources ?? []).map((r) => ({ ...r, group: r.group ?? '', version: r.version ?? '', status: r.status ?? '' }) as ResourceView),
    [props.resources, app],
  );
  const [prune, setPrune] = useState(false);
  const [dryRun, setDryRun] = useState(false);
  const [applyOnly, setApplyOnly] = useState(false);
  const [force, setForce] = useState(false);
  const [revision, setRevision] = useState((app.spec.source ?? app.spec.sources?.[0])?.targetRevision ?? '');
  const [opts, setOpts] = useState<Set<string>>(() => new Set(OPTIONS.map((o) => o[2]).filter((o) => appOpts.includes(o))));
  const [propagation, setPropagation] = useState(appOpts.find((o) => o.startsWith('PrunePropagationPolicy='))?.split('=')[1] ?? 'foreground');
  const [selected, setSelected] = useState<Set<string>>(() => new Set(resources.map(resourceId)));
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const toggle = (set: Set<string>, v: string, on: boolean) => {
    const n = new Set(set);
    if (on) n.add(v);
    else n.delete(v);
    return n;
  };
  const allSelected = selected.size === resources.length;

  const submit = async (e: Event) => {
    e.preventDefault();
    if (resources.length > 0 && selected.size === 0) {
      setError(new Error('Select at least one resource to sync.'));
      return;
    }
    const syncOptions = [...opts];
    // Force means delete and recreate, which only Replace does (apply is always server-side
    // with conflicts forced), so it is sent only with Replace.
    const forced = force && opts.has('Replace=true');
    if (forced) syncOptions.push('Force=true');
    if (propagation !== 'foreground') syncOptions.push(`PrunePropagationPolicy=${propagation}`);
    const body: SyncBody = { prune, dryRun };
    if (revision.trim()) body.revision = revision.trim();
    if (syncOptions.length) body.syncOptions = syncOptions;
    if (!allSelected) {
      body.resources = resources
        .filter((r) => selected.has(resourceId(r)))
        .map((r) => ({ group: r.group, kind: r.kind, name: r.name, ...(r.namespace ? { namespace: r.namespace } : {}) }));
    }
    if (applyOnly) body.syncStrategy = { apply: { force: forced } };
    setBusy(true);
    setError(null);
    try {
      await api.sync(app.metadata.namespace, app.metadata.name, body);
      props.onStarted(`${dryRun ? 'Dry-run sync' : 'Sync'} requested${body.revision ? ` at ${body.revision}` : ''}.`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Dialog title={`Sync ${app.metadata.name}`} onClose={props.onClose} testid="sync-dialog" wide>
      <form onSubmit={submit} class="dialog-body sync-form">
        <div class="field">
          <label for="sync-revision">Revision</label>
          <input id="sync-revision" data-testid="sync-revision" class="mono" value={revision} onInput={(e) => setRevision(e.currentTarget.value)} placeholder="HEAD, a branch, tag or commit" />
        </div>
        <fieldset>
          <legend>Options</legend>
          <div class="check-grid">
            <label class="check">
              <input type="checkbox" data-testid="sync-prune" checked={prune} onChange={(e) => setPrune(e.currentTarget.checked)} /> Prune
            </label>
            <label class="check">
              <input type="checkbox" data-testid="sync-dry-run" checked={dryRun} onChange={(e) => setDryRun(e.currentTarget.checked)} /> Dry run
            </label>
            <label class="check">
              <input type="checkbox" data-testid="sync-apply-only" checked={applyOnly} onChange={(e) => setApplyOnly(e.currentTarget.checked)} /> Apply only (no hooks)
            </label>
            <label class="check" title="Delete and recreate objects that cannot be replaced in place; needs the Replace option">
              <input
                type="checkbox"
                data-testid="sync-force"
                checked={force && opts.has('Replace=true')}
                disabled={!opts.has('Replace=true')}
                aria-describedby="force-help"
                onChange={(e) => setForce(e.currentTarget.checked)}
              />{' '}
              Force
              <span id="force-help" class="muted small"> (with Replace: delete and recreate)</span>
            </label>
          </div>
        </fieldset>
        <fieldset>
          <legend>Sync options</legend>
          <div class="check-grid">
            <label class="check" title="Flotilla always applies server-side (field manager flotilla-controller, conflicts forced)">
              <input type="checkbox" checked disabled /> Server-side apply (always on)
            </label>
            {OPTIONS.map(([key, label, value]) => (
              <label class="check" key={key}>
                <input type="checkbox" data-option={value} checked={opts.has(value)} onChange={(e) => setOpts(toggle(opts, value, e.currentTarget.checked))} /> {label}
              </label>
            ))}
          </div>
          <div class="field inline">
            <label for="sync-propagation">Prune propagation policy</label>
            <select id="sync-propagation" value={propagation} onChange={(e) => setPropagation(e.currentTarget.value)}>
              <option value="foreground">foreground</option>
              <option value="background">background</option>
              <option value="orphan">orphan</option>
            </select>
          </div>
        </fieldset>
        <fieldset class="sync-resources">
          <legend>
            Resources ({selected.size}/{resources.length})
          </legend>
          {resources.length > 0 && (
            <div class="res-tools">
              <button type="button" class="btn ghost small" onClick={() => setSelected(new Set(resources.map(resourceId)))}>
                All
              </button>
              <button type="button" class="btn ghost small" onClick={() => setSelected(new Set(resources.filter((r) => r.status !== 'Synced').map(resourceId)))}>
                Out of sync
              </button>
              <button type="button" class="btn ghost small" onClick={() => setSelected(new Set())}>
                None
              </button>
              {!allSelected && <span class="muted">A selective sync runs no hooks.</span>}
            </div>
          )}
          <ul class="res-list">
            {resources.map((r) => {
              const id = resourceId(r);
              return (
                <li key={id}>
                  <label class="check">
                    <input type="checkbox" data-testid="sync-resource" data-resource={id} checked={selected.has(id)} onChange={(e) => setSelected(toggle(selected, id, e.currentTarget.checked))} />
                    <span class="kind">{r.kind}</span> <span class="mono">{r.namespace ? `${r.namespace}/` : ''}{r.name}</span>
                    {r.status && r.status !== 'Synced' && <span class="tag warn">{r.status}</span>}
                  </label>
                </li>
              );
            })}
            {resources.length === 0 && <li class="muted">No resources known yet; the whole application is synced.</li>}
          </ul>
        </fieldset>
        <ErrorBox error={error} />
        <div class="dialog-foot">
          <button type="button" class="btn" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" class="btn primary" data-testid="sync-confirm" disabled={busy}>
            {busy ? 'Syncing…' : dryRun ? 'Dry run' : 'Synchronize'}
          </button>
        </div>
      </form>
    </Dialog>
  );
}
