// Desired (left, from Git) vs live (right) per resource, side by side, from the server's
// normalized, secret-masked diff; changed lines carry diff-add/diff-del plus a +/- marker.
import type { AppData } from '../appData';
import { ErrorBox } from '../components/ErrorBox';
import { Link } from '../components/Link';
import { HealthBadge, SyncBadge } from '../components/StatusBadge';
import { resourceId } from '../format';
import { navigate, withQuery, type Loc } from '../router';
import type { ResourceView } from '../types';
import { sideBySide, type Cell } from '../unifiedDiff';

function differs(r: ResourceView): boolean {
  return !!r.diff || r.status !== 'Synced' || !!r.requiresPruning;
}

function CellView(props: { c: Cell; side: 'left' | 'right' }) {
  const { c } = props;
  const cls = c.kind === 'add' ? 'diff-add' : c.kind === 'del' ? 'diff-del' : c.kind === 'none' ? 'diff-none' : 'diff-ctx';
  const marker = c.kind === 'add' ? '+' : c.kind === 'del' ? '-' : ' ';
  return (
    <>
      <td class={`ln ${cls}`}>{c.no ?? ''}</td>
      <td class={`code ${cls}${c.kind === 'none' && c.text ? ' absent' : ''}`}>
        <span class="mark" aria-label={c.kind === 'add' ? 'only in desired' : c.kind === 'del' ? 'only in live' : undefined}>
          {marker}
        </span>
        {c.text}
      </td>
    </>
  );
}

function ResourceDiff(props: { r: ResourceView; selected: boolean }) {
  const { r } = props;
  const rows = r.diff ? sideBySide(r.diff) : [];
  const title = `${r.kind} ${r.namespace ? `${r.namespace}/` : ''}${r.name}`;
  return (
    <section class={`resource-diff card${props.selected ? ' selected' : ''}`} data-testid="resource-diff" data-kind={r.kind} data-name={r.name} aria-label={`Diff of ${title}`} id={`diff-${resourceId(r)}`}>
      <header class="rd-head">
        <span class="rd-kind">{r.kind}</span>
        <span class="rd-name">{r.namespace ? `${r.namespace}/` : ''}{r.name}</span>
        <SyncBadge status={r.status} testid="resource-sync-status" small />
        {r.health && <HealthBadge status={r.health.status} testid="resource-health-status" small />}
        {r.requiresPruning && <span class="tag prune">will be pruned</span>}
      </header>
      {r.differences && r.differences.length > 0 && (
        <p class="rd-paths">
          Differs at: {r.differences.map((d, i) => <code key={i}>{d}</code>)}
        </p>
      )}
      {rows.length > 0 ? (
        <div class="diff-scroll">
          <table class="diff-table">
            <caption class="sr-only">Desired state on the left, live state on the right</caption>
            <colgroup>
              <col class="col-ln" />
              <col />
              <col class="col-ln" />
              <col />
            </colgroup>
            <thead>
              <tr>
                <th colSpan={2} scope="col">Desired (Git)</th>
                <th colSpan={2} scope="col">Live (cluster)</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((row, i) =>
                row.gap ? (
                  <tr class="gap" key={i}>
                    <td colSpan={4}>⋯ {row.label}</td>
                  </tr>
                ) : (
                  <tr key={i}>
                    <CellView c={row.left} side="left" />
                    <CellView c={row.right} side="right" />
                  </tr>
                ),
              )}
            </tbody>
          </table>
        </div>
      ) : (
        <p class="muted rd-none">{r.status === 'Synced' ? 'In sync: desired and live are the same.' : 'No field-level diff is available for this resource.'}</p>
      )}
    </section>
  );
}

export function DiffView(props: { data: AppData; loc: Loc }) {
  const { loc } = props;
  const { res, resError, resLoading } = props.data;
  if (!res) {
    if (resError) return <ErrorBox error={resError} what="the diff" />;
    return <p class="muted">{resLoading ? 'Computing the diff…' : 'No resources.'}</p>;
  }
  const selected = loc.query.get('resource');
  const showAll = loc.query.get('all') === '1';
  const sel = selected ? res.resources.find((r) => resourceId(r) === selected) : undefined;
  const list = sel ? [sel] : res.resources.filter((r) => showAll || differs(r));
  const differing = res.resources.filter(differs).length;
  return (
    <div class="diff-view">
      {resError ? <ErrorBox error={resError} what="the latest diff (showing the previous answer)" /> : null}
      <div class="diff-bar">
        {sel || selected ? (
          <span>
            Showing {sel ? `${sel.kind} ${sel.name}` : <>resource <code>{selected}</code> (not managed by this application)</>} ·{' '}
            <Link href={withQuery(loc.path, loc.query, { resource: null })}>show all differing resources</Link>
          </span>
        ) : (
          <span>
            {differing} of {res.resources.length} resource{res.resources.length === 1 ? '' : 's'} differ{differing === 1 ? 's' : ''}
          </span>
        )}
        <label class="check">
          <input type="checkbox" checked={showAll} onChange={(e) => navigate(withQuery(loc.path, loc.query, { all: e.currentTarget.checked ? '1' : null, resource: null }), true)} />
          Show all resources
        </label>
        <span class="legend">
          <span class="diff-add">+ only in desired</span> <span class="diff-del">- only in live</span>
        </span>
      </div>
      {list.length === 0 || (sel && !differs(sel) && !showAll) ? (
        <div class="no-diff" data-testid="no-diff" role="status">
          <span class="ico" aria-hidden="true" /> No differences{sel ? ` for ${sel.kind} ${sel.name}` : ''}: live matches what Git declares.
        </div>
      ) : (
        list.map((r) => <ResourceDiff key={resourceId(r)} r={r} selected={resourceId(r) === selected} />)
      )}
    </div>
  );
}
