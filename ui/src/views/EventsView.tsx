// The Kubernetes Events recorded about the application (newest first): type, reason, message, age.
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import { ErrorBox } from '../components/ErrorBox';
import { age } from '../format';
import type { AppEvent } from '../types';

export function EventsView(props: { ns: string; name: string; version: number }) {
  const [items, setItems] = useState<AppEvent[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    api.events(props.ns, props.name).then(
      (r) => {
        setItems([...(r.items ?? [])].reverse());
        setError(null);
      },
      setError,
    );
  }, [props.ns, props.name, props.version]);
  if (error) return <ErrorBox error={error} what="the events" />;
  if (!items) return <p class="muted">Loading events…</p>;
  if (items.length === 0) return <p class="muted">No events recorded.</p>;
  return (
    <table class="table events">
      <thead>
        <tr>
          <th scope="col">Type</th>
          <th scope="col">Reason</th>
          <th scope="col">Message</th>
          <th scope="col">Count</th>
          <th scope="col">Age</th>
        </tr>
      </thead>
      <tbody>
        {items.map((e, i) => (
          <tr key={i} data-testid="event-row" class={e.type === 'Warning' ? 'warn' : ''}>
            <td>
              <span class={`tag ${e.type === 'Warning' ? 'warn' : ''}`}>{e.type ?? 'Normal'}</span>
            </td>
            <td>{e.reason}</td>
            <td class="msg">{e.message}</td>
            <td>{e.count ?? ''}</td>
            <td title={e.time ?? undefined}>{e.time ? age(e.time) : ''}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
