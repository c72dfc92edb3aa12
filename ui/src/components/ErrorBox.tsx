// An API error shown inline: "permission denied" for 403, otherwise the server's message.
import { ApiError } from '../api';

export function ErrorBox(props: { error: unknown; what?: string }) {
  const e = props.error;
  if (!e) return null;
  const denied = e instanceof ApiError && e.status === 403;
  const msg = e instanceof Error ? e.message : String(e);
  return (
    <div class={`error-box${denied ? ' denied' : ''}`} role="alert">
      <strong>{denied ? 'Permission denied' : props.what ? `Could not load ${props.what}` : 'Error'}</strong>
      <span>{msg}</span>
    </div>
  );
}
