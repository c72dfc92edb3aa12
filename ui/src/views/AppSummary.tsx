// The application's summary card: source, revisions, destination, sync policy and conditions.
import { age, shortRev } from '../format';
import type { Application } from '../types';

export function AppSummaryPanel(props: { app: Application }) {
  const { app } = props;
  const src = app.spec.source ?? app.spec.sources?.[0];
  const st = app.status ?? {};
  const dest = app.spec.destination;
  const auto = app.spec.syncPolicy?.automated;
  const conditions = st.conditions ?? [];
  return (
    <section class="summary card" data-testid="app-summary" aria-label="Summary">
      <dl class="facts">
        <div>
          <dt>Project</dt>
          <dd data-field="project">{app.spec.project || 'default'}</dd>
        </div>
        <div class="wide">
          <dt>Repository</dt>
          <dd class="mono" data-field="repo">{src?.repoURL ?? '—'}</dd>
        </div>
        <div>
          <dt>{src?.chart ? 'Chart' : 'Path'}</dt>
          <dd class="mono" data-field="path">{src?.chart ?? src?.path ?? '—'}</dd>
        </div>
        <div>
          <dt>Target revision</dt>
          <dd class="mono" data-field="target-revision">{src?.targetRevision || 'HEAD'}</dd>
        </div>
        <div>
          <dt>Synced revision</dt>
          <dd class="mono" data-field="revision" title={st.sync?.revision}>{shortRev(st.sync?.revision) || '—'}</dd>
        </div>
        <div>
          <dt>Destination</dt>
          <dd class="mono" data-field="destination">
            {dest.name || dest.server || '—'}
            {dest.namespace ? ` / ${dest.namespace}` : ''}
          </dd>
        </div>
        <div>
          <dt>Sync policy</dt>
          <dd>{auto ? `Automated${auto.prune ? ', prune' : ''}${auto.selfHeal ? ', self-heal' : ''}` : 'Manual'}</dd>
        </div>
        <div>
          <dt>Reconciled</dt>
          <dd title={st.reconciledAt}>{st.reconciledAt ? `${age(st.reconciledAt)} ago` : '—'}</dd>
        </div>
        {st.health?.message && (
          <div class="wide">
            <dt>Health message</dt>
            <dd>{st.health.message}</dd>
          </div>
        )}
      </dl>
      {conditions.length > 0 && (
        <ul class="conditions" aria-label="Conditions">
          {conditions.map((c, i) => (
            <li key={i} class={/error|invalid|fail/i.test(c.type) ? 'cond bad' : 'cond warn'} data-testid="condition">
              <strong class="cond-type">{c.type}</strong>
              <span class="cond-msg">{c.message}</span>
              {c.lastTransitionTime && <span class="muted"> · {age(c.lastTransitionTime)} ago</span>}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
