/**
 * The signed-in buyer when the service runs with AUTH=jwt. A real shop gets
 * the buyer's token from its identity provider's login (an OpenID Connect
 * redirect and code exchange); this page has no login of its own, so it takes
 * the token handed to it in the address's fragment (`/#token=<JWT>`: a
 * fragment is never sent to a server, and it is removed from the address and
 * history at once) or kept from earlier in this tab's sessionStorage. It sends
 * the token as `Authorization: Bearer` on checkout and purchase; the user id
 * is the token's `sub`. The page only reads `sub`: the service verifies the
 * token on every request.
 */
const KEY = 'flashsale:token';

function subjectOf(token: string): string | undefined {
  try {
    const payload = token.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(payload)) as { sub?: unknown };
    return typeof claims.sub === 'string' && claims.sub !== '' ? claims.sub : undefined;
  } catch {
    return undefined;
  }
}

export function signedIn(): { token: string; sub: string } | undefined {
  const handed = /^#token=([\w.-]+)$/.exec(location.hash)?.[1];
  if (handed) {
    sessionStorage.setItem(KEY, handed);
    history.replaceState(null, '', location.pathname + location.search);
  }
  const token = sessionStorage.getItem(KEY);
  const sub = token ? subjectOf(token) : undefined;
  return token && sub ? { token, sub } : undefined;
}
