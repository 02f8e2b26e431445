// The Bitrix24 frame SDK, initialised once and shared by the API client and the UI.
// The SDK (with its HTTP client and date library) is most of the bundle, and the first screen needs none of
// it (the session token comes with the page): it is imported on first use, in its own chunk.

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
      timer = setTimeout(() => reject(new Error('frame_init_timeout')), INIT_TIMEOUT_MS)
    })
    const init = import('@bitrix24/b24jssdk').then(({ initializeB24Frame }) => initializeB24Frame())
    framePromise = Promise.race([init, timeout])
      .finally(() => clearTimeout(timer))
      .catch((error) => {
        framePromise = null
        throw error
      })
  }
  return framePromise
}

/** The height the content needs (the body's, which unlike the root's never counts the frame's own height). */
function contentHeight() {
  return Math.ceil(document.body.getBoundingClientRect().height)
}

/**
 * Asks the portal to fit the frame to the content; silently does nothing outside a frame.
 * fitWindow measures the root element, which is never shorter than the frame, so it can only grow the frame.
 * When the content got shorter (a long form closed), resizeWindow first shrinks the frame to the content, then
 * fitWindow puts the width back to 100% (resizeWindow takes pixels only).
 */
export async function fitFrame() {
  if (!isInPortalFrame()) return
  try {
    const $b24 = await getFrame()
    const height = contentHeight()
    if (height > 0 && height < window.innerHeight - 1) {
      await $b24.parent.resizeWindow(document.documentElement.clientWidth, height)
    }
    await $b24.parent.fitWindow()
  } catch {
    // Sizing is cosmetic; never let it break the page.
  }
}

/**
 * Opens the portal's own employee picker (BX24 selectUsers) and resolves to [{id, name, position, photo}],
 * or null when the page is not in a portal frame or the portal does not answer (the caller then offers its
 * own searchable list).
 */
export async function pickPortalUsers() {
  if (!isInPortalFrame()) return null
  let $b24
  try {
    $b24 = await getFrame()
  } catch {
    return null
  }
  const picked = await $b24.dialog.selectUsers()
  return (Array.isArray(picked) ? picked : []).map((user) => ({
    id: Number(user.id),
    name: String(user.name || ''),
    position: String(user.position || ''),
    photo: String(user.photo || ''),
  }))
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
      // Skip the round trip when the content kept its height.
      const height = contentHeight()
      if (height === lastHeight) return
      lastHeight = height
      fitFrame()
    })
  }
  new ResizeObserver(schedule).observe(element)
  schedule()
}
