// JSON client for the app's own API. The session token lives in this module's memory only: never in
// localStorage or cookies (third-party frame, see DESIGN.md "Identity and trust"). The one exception is a tab
// opened with the OAuth code flow (/auth/bitrix24, boot.session === 'cookie'): there the server keeps a
// first-party HttpOnly cookie, and the token is renewed with it instead of the frame SDK.
import { getFrame } from './frame.js'

// Renew this long before the server-side expiry so a request never races the deadline.
const RENEW_MARGIN_S = 60

let apiBase = ''
let token = null
let expiresAt = 0
let renewing = null
let cookieSession = false
const sessionListeners = new Set()

/**
 * An API failure in the server's {"error", "message", …} shape (status 0 = no response). `code` is stable and
 * the UI translates it (i18n.js errorText); `message` is the server's English text, `data` the whole body
 * (e.g. `fields` of a 422 validation_error).
 */
export class ApiError extends Error {
  constructor(status, code, message, data = null) {
    super(message || code)
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.data = data && typeof data === 'object' ? data : {}
  }
}

/** Takes the token, its expiry and the URL prefix from the page's boot data. */
export function configureApi(boot) {
  apiBase = String(boot.api_base || '').replace(/\/+$/, '')
  token = boot.token || null
  expiresAt = Number(boot.token_expires_at) || 0
  cookieSession = boot.session === 'cookie'
}

/** Calls fn(sessionResponse) every time the session is renewed; returns an unsubscribe function. */
export function onSessionRenewed(fn) {
  sessionListeners.add(fn)
  return () => sessionListeners.delete(fn)
}

/** Absolute path of an API endpoint: "/integrations" -> "{api_base}/api/integrations". */
export function apiUrl(path) {
  return `${apiBase}/api${path.startsWith('/') ? path : `/${path}`}`
}

function needsRenewal() {
  return !token || (expiresAt > 0 && expiresAt - Date.now() / 1000 < RENEW_MARGIN_S)
}

async function parse(response) {
  const text = await response.text()
  let data = null
  if (text) {
    try {
      data = JSON.parse(text)
    } catch {
      if (response.ok) throw new ApiError(response.status, 'bad_response', '')
    }
  }
  if (response.ok) return data
  throw new ApiError(response.status, data?.error || `http_${response.status}`, data?.message || '', data)
}

async function send(path, method, body, authorised = true, extraHeaders = {}) {
  const headers = { Accept: 'application/json', ...extraHeaders }
  if (authorised && token) headers.Authorization = `Bearer ${token}`
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  try {
    return await fetch(apiUrl(path), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    })
  } catch {
    throw new ApiError(0, 'network_error', '')
  }
}

async function frameAuth(forceRefresh) {
  const $b24 = await getFrame()
  let auth = forceRefresh ? false : $b24.auth.getAuthData()
  if (!auth) auth = await $b24.auth.refreshAuth()
  if (!auth) throw new ApiError(401, 'frame_auth_unavailable', '')
  return auth
}

async function exchange(auth) {
  // The SDK reports domain as the portal origin ("https://x.bitrix24.ru"); the server wants the host.
  const domain = String(auth.domain || '').replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '')
  const body = { access_token: auth.access_token, domain, member_id: auth.member_id }
  return parse(await send('/session', 'POST', body, false))
}

async function cookieExchange() {
  // The only request that sends cookies: same origin, a JSON body (no cross-site form can forge it).
  let response
  try {
    response = await fetch(apiUrl('/session/cookie'), {
      method: 'POST',
      headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
      body: '{}',
      credentials: 'same-origin',
      cache: 'no-store',
    })
  } catch {
    throw new ApiError(0, 'network_error', '')
  }
  return parse(response)
}

async function frameExchange() {
  try {
    return await exchange(await frameAuth(false))
  } catch (error) {
    // The cached portal token may have expired or been revoked: ask the portal for a new one, once.
    if (!(error instanceof ApiError && error.status === 401)) throw error
    return exchange(await frameAuth(true))
  }
}

/**
 * Renews the session token: with a fresh Bitrix24 frame auth, or in a code-flow tab with its session cookie;
 * concurrent callers share one exchange.
 */
export function renewSession() {
  if (!renewing) {
    renewing = (async () => {
      const data = cookieSession ? await cookieExchange() : await frameExchange()
      token = data.token
      expiresAt = Number(data.expires_at) || 0
      for (const fn of sessionListeners) fn(data)
      return data
    })().finally(() => {
      renewing = null
    })
  }
  return renewing
}

/**
 * Calls {api_base}/api{path} with the bearer token, renewing the session (once) when needed; resolves to the
 * parsed JSON, or with `blob: true` to the body as a Blob (downloads such as dialogs.csv).
 */
export async function api(path, { method = 'GET', body, headers = {}, blob = false } = {}) {
  const read = (response) => (blob && response.ok ? response.blob() : parse(response))
  if (needsRenewal()) {
    try {
      await renewSession()
    } catch {
      // Go on with what we have; the server's answer decides.
    }
  }
  const first = await send(path, method, body, true, headers)
  if (first.status !== 401) return read(first)
  try {
    await renewSession()
  } catch {
    return read(first)
  }
  return read(await send(path, method, body, true, headers))
}

/** "?a=1&b=x" from an object, leaving out empty values (for list filters). */
export function query(params) {
  const search = new URLSearchParams()
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, String(value))
  }
  const text = search.toString()
  return text ? `?${text}` : ''
}
