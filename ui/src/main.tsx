// Entry point: applies the theme, finds out who is signed in, and routes the URL to a view.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, setUnauthorizedHandler } from './api';
import { Header } from './components/Header';
import { navigate, useLocation } from './router';
import { setUser, useUser } from './session';
import { applyTheme } from './theme';
import { AppDetail } from './views/AppDetail';
import { AppList } from './views/AppList';
import { Fleet } from './views/Fleet';
import { Login } from './views/Login';
import './theme.css';

applyTheme();

function toLogin(): void {
  const here = location.pathname + location.search;
  if (location.pathname === '/login') return;
  setUser({ loggedIn: false });
  navigate(`/login?return=${encodeURIComponent(here)}`, true);
}
setUnauthorizedHandler(toLogin);

function Routes() {
  const loc = useLocation();
  const user = useUser();
  const [checked, setChecked] = useState(false);

  useEffect(() => {
    api
      .userInfo()
      .then((u) => {
        setUser(u);
        if (!u.loggedIn) toLogin();
      })
      .catch((e) => {
        // Without a session endpoint the calls themselves tell (401 → login).
        if (e instanceof ApiError && e.status === 401) toLogin();
        else setUser({ loggedIn: true, username: '' });
      })
      .finally(() => setChecked(true));
  }, []);

  useEffect(() => {
    if (loc.path === '/' || loc.path === '') navigate('/applications', true);
  }, [loc.path]);

  if (loc.path === '/login') return <Login />;
  if (!checked || !user?.loggedIn) return <div class="boot" aria-busy="true" />;

  const parts = loc.path.split('/').filter(Boolean).map(decodeURIComponent);
  let view;
  if (parts[0] === 'applications' && parts.length === 3) view = <AppDetail key={`${parts[1]}/${parts[2]}`} ns={parts[1]} name={parts[2]} />;
  else if (parts[0] === 'applications' && parts.length === 1) view = <AppList />;
  else if (parts[0] === 'fleet') view = <Fleet />;
  else
    view = (
      <div class="page">
        <h1>Not found</h1>
        <p>
          Nothing lives at <code>{loc.path}</code>. <a href="/applications">Go to applications</a>.
        </p>
      </div>
    );
  return (
    <>
      <Header />
      <main id="main" tabIndex={-1}>
        {view}
      </main>
    </>
  );
}

render(<Routes />, document.getElementById('app')!);
