// An <a href> that navigates inside the single-page app on a plain click.
import type { ComponentChildren, JSX } from 'preact';
import { linkClick } from '../router';

export function Link(props: { href: string; children?: ComponentChildren } & Omit<JSX.HTMLAttributes<HTMLAnchorElement>, 'onClick'>) {
  const { href, children, ...rest } = props;
  return (
    <a href={href} onClick={linkClick} {...rest}>
      {children}
    </a>
  );
}
