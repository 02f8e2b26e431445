// The Bitrix24 frame SDK, initialised once and shared by the API client and the UI.
import { initializeB24Frame } from '@bitrix24/b24jssdk'

// getInitData has no timeout in the SDK: a parent that never answers would hang every caller.
const INIT_TIMEOUT_MS = 8000

let framePromise = null

/** True when the page runs inside an iframe that Bitrix24 named "DOMAIN|PROTOCOL|APP_SID". */
export function isInPortalFrame() {
  return window.parent !== window && window.name.split('|').length >= 3
}

/** Resolves to the initialised B24Frame ($b24); rejects outside a portal frame or on timeout. */
export function getFrame() {
  if (!framePromise) {
    let timer
    const timeout = new Promise((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error('Битрикс24 не ответил на запрос инициализации')), INIT_TIMEOUT_MS)
    })
    framePromise = Promise.race([initializeB24Frame(), timeout])
      .finally(() => clearTimeout(timer))
      .catch((error) => {
        framePromise = null
        throw error
      })
  }
  return framePromise
}

/** Asks the portal to fit the frame to the document height; silently does nothing outside a frame. */
export async function fitFrame() {
  if (!isInPortalFrame()) return
  try {
    const $b24 = await getFrame()
    await $b24.parent.fitWindow()
  } catch {
    // Sizing is cosmetic; never let it break the page.
  }
}

/** Re-fits the portal frame whenever the rendered content changes size. */
export function autoFitFrame(element = document.body) {
  if (!isInPortalFrame()) return
  let scheduled = false
  let lastHeight = -1
  const schedule = () => {
    if (scheduled) return
    scheduled = true
    requestAnimationFrame(() => {
      scheduled = false
      // The same measure the SDK's fitWindow sends; skip the round trip when nothing changed.
      const root = document.documentElement
      const height = Math.max(root.scrollHeight, root.offsetHeight)
      if (height === lastHeight) return
      lastHeight = height
      fitFrame()
    })
  }
  new ResizeObserver(schedule).observe(element)
  schedule()
}
