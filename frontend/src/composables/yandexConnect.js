// Connecting a Yandex account in a popup (portal account for admins, a personal one for any employee):
// POST /api/integrations/yandex/connect gives a one-time URL; the popup runs the OAuth flow and closes itself.
import { onUnmounted, ref } from 'vue'

import { api } from '../api.js'
import { useT } from '../i18n.js'
import { useApi } from './useApi.js'

const CLOSED_POLL_MS = 700

/** The Yandex accounts the UI cares about, whatever the exact answer of GET /api/integrations. */
export function yandexAccounts(data) {
  const shape = (value) => {
    if (!value || typeof value !== 'object') return { connected: false, account: null, status: null, restricted: false }
    const restricted = Boolean(value.restricted) || value.status === 'restricted' || value.last_error === 'telemost_restricted_to_organizations'
    return { ...value, connected: Boolean(value.connected), restricted }
  }
  return { portal: shape(data?.yandex), personal: shape(data?.personal || data?.yandex_personal) }
}

/**
 * `connect(scope)` opens the consent popup ("portal" or "personal"); `onDone` runs when the popup closes
 * (or the user comes back to the frame, when the provider's pages severed the opener).
 */
export function useYandexConnect(onDone) {
  const request = useApi()
  const { locale } = useT()
  const blockedUrl = ref('')
  let pollTimer = null
  let flowStarted = false

  function stop() {
    if (pollTimer) clearInterval(pollTimer)
    pollTimer = null
  }

  function onFocus() {
    if (flowStarted && !pollTimer) onDone()
  }
  window.addEventListener('focus', onFocus)
  onUnmounted(() => {
    stop()
    window.removeEventListener('focus', onFocus)
  })

  async function connect(scope = 'portal') {
    blockedUrl.value = ''
    // The connect window speaks the user's language too.
    const data = await request.run('/integrations/yandex/connect', { method: 'POST', body: { scope, lang: locale.value } })
    if (!data?.url) return
    const win = window.open(data.url, 'yandex-oauth', 'popup,width=640,height=760')
    if (!win) {
      blockedUrl.value = data.url
      return
    }
    flowStarted = true
    stop()
    pollTimer = setInterval(() => {
      if (!win.closed) return
      stop()
      onDone()
    }, CLOSED_POLL_MS)
  }

  return { connect, connecting: request.loading, error: request.error, errorMessage: request.errorMessage, blockedUrl }
}

/** DELETE the portal's (or the user's personal) Yandex account; resolves to the new integrations answer. */
export function disconnectYandex(scope = 'portal') {
  return api(scope === 'personal' ? '/integrations/yandex?scope=personal' : '/integrations/yandex', { method: 'DELETE' })
}
