// The top bar on every signed-in view: product name, navigation, user, theme toggle, log out.
import { api } from '../api';
import { navigate, useLocation } from '../router';
import { setUser, useCanI, useUser } from '../session';
import { setTheme, useTheme } from '../theme';
import { Link } from './Link';

export function Header() {
  const loc = useLocation();
  const user = useUser();
  // The fleet view needs `clusters, get` on every cluster, as the API does.
  const canSeeFleet = useCanI('clusters', 'get', user ? '*' : null);
  const theme = useTheme();
  const next = theme === 'dark' ? 'light' : 'dark';
  const logout = async () => {
    try {
      await api.logout();
    } catch {
      /* the cookie may already be gone; go to login regardless */
    }
    setUser({ loggedIn: false });
    navigate('/login');
  };
  const section = loc.path.startsWith('/fleet') ? 'fleet' : 'applications';
  return (
    <header class="topbar">
      <a class="skip" href="#main">
        Skip to content
      </a>
      <Link href="/applications" class="brand" aria-label="Flotilla home">
        <svg viewBox="0 0 32 32" width="22" height="22" aria-hidden="true">
          <rect width="32" height="32" rx="6" class="brand-bg" />
          <path d="M6 20h20l-3 5H9z M15 6v13 M15 7l8 10h-8z" class="brand-fg" />
        </svg>
        <span>Flotilla</span>
      </Link>
      <nav aria-label="Main">
        <Link href="/applications" aria-current={section === 'applications' ? 'page' : undefined}>
          Applications
        </Link>
        {canSeeFleet !== false && (
          <Link href="/fleet" aria-current={section === 'fleet' ? 'page' : undefined}>
            Fleet
          </Link>
        )}
      </nav>
      <div class="topbar-right">
        <span class="user" data-testid="user" title={user?.groups?.length ? `groups: ${user.groups.join(', ')}` : undefined}>
          {user?.username ?? ''}
        </span>
        <button
          type="button"
          class="icon-btn"
          data-testid="theme-toggle"
          aria-label={`Switch to ${next} theme`}
          title={`Switch to ${next} theme`}
          onClick={() => setTheme(next)}
        >
          {theme === 'dark' ? '☀' : '☾'}
        </button>
        <button type="button" class="btn ghost" data-testid="logout" onClick={logout}>
          Log out
        </button>
      </div>
    </header>
  );
}
