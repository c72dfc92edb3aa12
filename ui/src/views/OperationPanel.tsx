// The current or last operation: phase, message, timing, and each resource's result grouped by
// sync phase (PreSync, Sync, PostSync, SyncFail) and wave, hooks marked.
import { useState } from 'preact/hooks';
import { age, shortRev } from '../format';
import type { OperationState, ResourceResult, ResourceView } from '../types';

const PHASES = ['PreSync', 'Sync', 'PostSync', 'SyncFail'];

const keyOf = (r: { group?: string; kind: string; namespace?: string; name: string }) =>
  `${r.group ?? ''}/${r.kind}/${r.namespace ?? ''}/${r.name}`;

/** Each result's wave: its own, else the managed resource's (hooks without one: none). */
function withWaves(rs: ResourceResult[], resources: ResourceView[] | null): ResourceResult[] {
  const waves = new Map((resources ?? []).map((r) => [keyOf(r), r.syncWave]));
  return rs.map((r) => (r.syncWave !== undefined || r.hookType ? r : { ...r, syncWave: waves.get(keyOf(r)) }));
}

function groups(rs: ResourceResult[]): { phase: string; waves: { wave: string; items: ResourceResult[] }[] }[] {
  const byPhase = new Map<string, ResourceResult[]>();
  for (const r of rs) {
    const p = r.syncPhase || r.hookType || 'Sync';
    byPhase.set(p, [...(byPhase.get(p) ?? []), r]);
  }
  const order = [...PHASES, ...[...byPhase.keys()].filter((p) => !PHASES.includes(p))];
  return order
    .filter((p) => byPhase.has(p))
    .map((phase) => {
      const byWave = new Map<string, ResourceResult[]>();
      for (const r of byPhase.get(phase)!) {
        const w = r.syncWave === undefined || r.syncWave === null ? '' : String(r.syncWave);
        byWave.set(w, [...(byWave.get(w) ?? []), r]);
      }
      const waves = [...byWave.entries()].sort((a, b) => Number(a[0] || 0) - Number(b[0] || 0)).map(([wave, items]) => ({ wave, items }));
      return { phase, waves };
    });
}

/** A task's phase; a finished operation leaves no task running (single-step syncs keep "Running"). */
function taskPhase(r: ResourceResult, opRunning: boolean): string | undefined {
  return !opRunning && r.hookPhase === 'Running' ? undefined : r.hookPhase;
}

function resultClass(r: ResourceResult, opRunning: boolean): string {
  const s = (taskPhase(r, opRunning) || r.status || '').toLowerCase();
  if (/fail|error/.test(s)) return 'bad';
  if (/running|terminating/.test(s)) return 'run';
  if (/prune/.test(s) && !/skipped/.test(s)) return 'prune';
  return 'ok';
}

export function OperationPanel(props: { op: OperationState; resources?: ResourceView[] | null }) {
  const { op } = props;
  const rs = withWaves(op.syncResult?.resources ?? [], props.resources ?? null);
  const running = op.phase === 'Running' || op.phase === 'Terminating';
  const [open, setOpen] = useState(running);
  const sync = op.operation?.sync;
  const flags = [sync?.dryRun && 'dry run', sync?.prune && 'prune', ...(sync?.syncOptions ?? [])].filter(Boolean).join(', ');
  const done = running ? rs.filter((r) => !/running|terminating/i.test(r.hookPhase ?? '')).length : rs.length;
  return (
    <section class={`operation card op-${op.phase.toLowerCase()}`} data-testid="operation" aria-label="Operation">
      <div class="op-head">
        <span class={`badge phase-${op.phase.toLowerCase()}`} data-testid="operation-phase">
          {op.phase}
        </span>
        <span class="op-title">
          {running ? 'Sync in progress' : 'Last sync'}
          {op.syncResult?.revision ? ` to ${shortRev(op.syncResult.revision)}` : sync?.revision ? ` to ${shortRev(sync.revision)}` : ''}
          {op.operation?.initiatedBy?.automated ? ' (automated)' : op.operation?.initiatedBy?.username ? ` by ${op.operation.initiatedBy.username}` : ''}
        </span>
        <span class="muted">
          {op.startedAt && `started ${age(op.startedAt)} ago`}
          {op.finishedAt && ` · finished ${age(op.finishedAt)} ago`}
          {op.retryCount ? ` · attempt ${op.retryCount}` : ''}
          {flags && ` · ${flags}`}
        </span>
        {rs.length > 0 && (
          <>
            <span class="progress" role="progressbar" aria-label="Resources done" aria-valuemin={0} aria-valuemax={rs.length} aria-valuenow={done}>
              <span class="progress-fill" style={{ width: `${(100 * done) / rs.length}%` }} />
            </span>
            <button type="button" class="btn ghost small" aria-expanded={open} onClick={() => setOpen(!open)}>
              {open ? 'Hide' : 'Show'} {rs.length} result{rs.length === 1 ? '' : 's'}
            </button>
          </>
        )}
      </div>
      {op.message && <p class="op-msg">{op.message}</p>}
      {open && rs.length > 0 && (
        <div class="op-phases">
          {groups(rs).map((g) => (
            <div class="op-phase" key={g.phase} data-phase={g.phase}>
              <h3>{g.phase}</h3>
              {g.waves.map((w) => (
                <div class="op-wave" key={w.wave} data-wave={w.wave}>
                  {w.wave !== '' && <div class="wave-label">wave {w.wave}</div>}
                  <ul>
                    {w.items.map((r, i) => (
                      <li key={i} class={`op-res ${resultClass(r, running)}`} data-kind={r.kind} data-name={r.name}>
                        <span class="ico" aria-hidden="true" />
                        <span class="kind">{r.kind}</span>
                        <span class="name">{r.name}</span>
                        {r.hookType && <span class="tag hook">hook {r.hookType}</span>}
                        <span class="res-status">{r.status}</span>
                        {taskPhase(r, running) && taskPhase(r, running) !== r.status && <span class="res-phase">{taskPhase(r, running)}</span>}
                        {r.message && <span class="res-msg">{r.message}</span>}
                      </li>
                    ))}
                  </ul>
                </div>
              ))}
            </div>
          ))}
        </div>
      )}
    </section>
  );
}
