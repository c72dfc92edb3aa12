// The application list's toolbar: search (debounced), project/cluster/namespace/labels/health/sync
// filters and the list/tiles switch; every value lives in the URL.
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import { HEALTH_WORDS, SYNC_WORDS } from '../components/StatusBadge';
import { navigate, withQuery, type Loc } from '../router';
import type { ClusterView } from '../types';

/** A text input whose value reaches the URL ~200 ms after typing stops. */
function DebouncedInput(props: { id: string; label: string; param: string; loc: Loc; placeholder?: string; testid: string; type?: string; class?: string }) {
  const urlValue = props.loc.query.get(props.param) ?? '';
  const [v, setV] = useState(urlValue);
  const [focused, setFocused] = useState(false);
  useEffect(() => {
    if (!focused) setV(urlValue);
  }, [urlValue]);
  useEffect(() => {
    if (v === urlValue) return;
    const t = window.setTimeout(() => navigate(withQuery(props.loc.path, new URLSearchParams(location.search), { [props.param]: v.trim() }), true), 200);
    return () => window.clearTimeout(t);
  }, [v]);
  return (
    <div class={`field ${props.class ?? ''}`}>
      <label for={props.id}>{props.label}</label>
      <input
        id={props.id}
        type={props.type ?? 'text'}
        data-testid={props.testid}
        value={v}
        placeholder={props.placeholder}
        autoComplete="off"
        spellcheck={false}
        onInput={(e) => setV(e.currentTarget.value)}
        onFocus={() => setFocused(true)}
        onBlur={() => setFocused(false)}
      />
    </div>
  );
}

function Select(props: { id: string; label: string; param: string; loc: Loc; testid: string; options: { value: string; label: string }[]; all: string }) {
  const value = props.loc.query.get(props.param) ?? '';
  const opts = props.options.some((o) => o.value === value) || !value ? props.options : [...props.options, { value, label: value }];
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      <select
        id={props.id}
        data-testid={props.testid}
        value={value}
        onChange={(e) => navigate(withQuery(props.loc.path, props.loc.query, { [props.param]: e.currentTarget.value }), true)}
      >
        <option value="">{props.all}</option>
        {opts.map((o) => (
          <option value={o.value} key={o.value}>
            {o.label}
          </option>
        ))}
      </select>
    </div>
  );
}

export function AppFilters(props: { loc: Loc }) {
  const { loc } = props;
  const [projects, setProjects] = useState<string[]>([]);
  const [clusters, setClusters] = useState<ClusterView[]>([]);
  useEffect(() => {
    api.projects().then((p) => setProjects(p.items.map((i) => i.metadata.name).sort()), () => {});
    api.clusters().then((c) => setClusters(c.items), () => {});
  }, []);
  const filtered = ['search', 'project', 'cluster', 'namespace', 'labels', 'health', 'sync'].some((k) => loc.query.get(k));
  return (
    <div class="filters" role="search" aria-label="Filter applications">
      <DebouncedInput id="f-search" label="Search" param="search" loc={loc} testid="app-search" type="search" placeholder="Name contains…" class="grow" />
      <Select id="f-project" label="Project" param="project" loc={loc} testid="filter-project" all="All projects" options={projects.map((p) => ({ value: p, label: p }))} />
      <Select
        id="f-cluster"
        label="Cluster"
        param="cluster"
        loc={loc}
        testid="filter-cluster"
        all="All clusters"
        options={clusters.map((c) => ({ value: c.server, label: c.name && c.name !== c.server ? `${c.name} (${c.server})` : c.server }))}
      />
      <DebouncedInput id="f-namespace" label="Namespace" param="namespace" loc={loc} testid="filter-namespace" placeholder="Destination namespace" />
      <DebouncedInput id="f-labels" label="Labels" param="labels" loc={loc} testid="filter-labels" placeholder="team=web,env!=prod" />
      <Select id="f-health" label="Health" param="health" loc={loc} testid="filter-health" all="Any health" options={HEALTH_WORDS.map((w) => ({ value: w, label: w }))} />
      <Select id="f-sync" label="Sync" param="sync" loc={loc} testid="filter-sync" all="Any sync" options={SYNC_WORDS.map((w) => ({ value: w, label: w }))} />
      {filtered && (
        <button type="button" class="btn ghost clear" onClick={() => navigate(withQuery(loc.path, new URLSearchParams(), { view: loc.query.get('view') }), true)}>
          Clear filters
        </button>
      )}
    </div>
  );
}
